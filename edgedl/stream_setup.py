"""What a stream needs from a loaded model: its preprocessing, its input, and how to read its outputs.

Worked out once, before the first frame, from the bundle's manifest (preprocessing spec, task,
labels) and the user's options, so each frame only runs three calls: preprocess, infer,
postprocess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedl.batching import stack
from edgedl.errors import UsageError
from edgedl.options import PreprocessOptions
from edgedl.preprocess import PRESETS, Geometry, PreprocessSpec, preprocess
from edgedl.results import Prediction
from edgedl.vocabulary import DEVICE_PREPROCESS, MAX_BATCH

log = logging.getLogger("edgedl.pipeline")


@dataclass
class StreamSetup:
    """The per-model half of a stream: ``preprocess(image)``, ``infer(tensor)``, ``postprocess(outputs, geometry)``."""

    spec: PreprocessSpec
    input_name: str
    postprocessor: Callable[[dict[str, np.ndarray], Any], Prediction]
    postprocess_name: str
    context: Any
    model: Any
    gpu: Any = None

    @classmethod
    def for_model(cls, model: Any, *, postprocess: str | Callable[..., Prediction] | None = None, conf: float = 0.25,
                  iou: float = 0.45, top_k: int = 5, max_detections: int = 300, class_agnostic: bool = False,
                  keep_outputs: bool = False, preprocess: PreprocessSpec | str | None = None,
                  device_preprocess: str = "auto") -> StreamSetup:
        """Resolve the spec, the image input, the postprocessor and GPU preprocessing for ``model``."""
        from edgedl import postprocess as post

        if device_preprocess not in DEVICE_PREPROCESS:
            raise UsageError(f"device_preprocess must be one of {', '.join(DEVICE_PREPROCESS)}, got {device_preprocess!r}")
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise UsageError(f"conf and iou must be between 0 and 1 (got {conf}, {iou})",
                             fix="for example --conf 0.25 --iou 0.45")
        manifest = model.source.manifest
        spec, input_name = _spec(model, preprocess)
        labels = list(manifest.labels) if manifest else []
        task = manifest.task if manifest else "raw"
        if callable(postprocess):
            fn, name = postprocess, getattr(postprocess, "__name__", "custom")
        else:
            name = post.choose(task, [(o.name, tuple(o.shape)) for o in model.outputs], postprocess)
            fn = post.get(name)
        context = post.PostContext(geometry=None, input_size=(spec.width, spec.height), labels=labels,
                                   conf_threshold=conf, iou_threshold=iou, top_k=top_k, max_detections=max_detections,
                                   class_agnostic=class_agnostic, keep_outputs=keep_outputs)
        gpu = _gpu_preprocessor(model, spec, device_preprocess)
        return cls(spec, input_name, fn, name, context, model, gpu)

    @property
    def fused_preprocess(self) -> bool:
        """Whether preprocessing runs on the GPU, in the inference thread and stream."""
        return self.gpu is not None

    def preprocess(self, image: np.ndarray) -> tuple[Any, Geometry]:
        """One frame to the model's input (host array, or device tensor with GPU preprocessing)."""
        if self.gpu is not None:
            return self.gpu.run(image)
        return preprocess(self.spec, image)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model's image input is fixed to, or None when its batch dimension is dynamic."""
        spec = next((i for i in self.model.inputs if i.name == self.input_name), None)
        dim = spec.shape[0] if spec is not None and spec.shape else 1
        return dim if isinstance(dim, int) and dim > 0 else None

    def batch_size(self, requested: int | None) -> int:
        """The most frames per model call: ``requested``, else the model's fixed batch, else :data:`MAX_BATCH`.
        A fixed batch larger than the frames at hand is padded; a dynamic one runs the frames at hand."""
        fixed = self.fixed_batch
        if requested is None:
            # Whatever is already queued (a video file decodes ahead; a live camera gives its newest frame only) goes
            # through in one call, never waited for: one call on several frames spends less CPU per frame than
            # several calls (YOLOv8n-shaped at 320, ONNX Runtime, 2 cores, blocking workers: 19.4 ms of CPU a frame
            # one by one, 17.4 two at a time, 16.6 four at a time; tools/bench_stream.py and
            # tools/bench_multistream.py show what streams gain).
            return fixed if fixed is not None else MAX_BATCH
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise UsageError(f"batch size must be a whole number of at least 1, got {requested!r}",
                             fix="for example batch_size=4 (--batch-size 4)")
        if fixed is not None and requested != fixed:
            raise UsageError(f"{self.model.path.name} takes batches of exactly {fixed} frames, not {requested}",
                             path=self.model.path, fix=f"use batch size {fixed}, or convert the model with a dynamic "
                                                       "batch (edgedl convert --dynamic-batch)")
        return requested

    def preprocess_batch(self, images: list[np.ndarray]) -> tuple[Any, list[Geometry]]:
        """Several frames to one model input and their geometries: one row per frame, zero-padded to the model's
        batch where that is fixed."""
        batch = self.fixed_batch or len(images)
        if len(images) == 1 and batch == 1:
            tensor, geometry = self.preprocess(images[0])
            return tensor, [geometry]
        if self.gpu is not None:
            return self.gpu.run_batch(images, batch)
        pairs = [preprocess(self.spec, image) for image in images]
        return stack([tensor for tensor, _ in pairs], batch), [geometry for _, geometry in pairs]

    def infer(self, tensor: Any) -> dict[str, np.ndarray]:
        """Run the model on one preprocessed frame or batch."""
        return self.model({self.input_name: tensor})

    def postprocess(self, outputs: dict[str, np.ndarray], geometry: Geometry) -> Prediction:
        """One frame's outputs to a :class:`Prediction` in frame coordinates."""
        from dataclasses import replace

        return self.postprocessor(outputs, replace(self.context, geometry=geometry))

    def close(self) -> None:
        """Free GPU preprocessing buffers (the model stays open: it belongs to the caller)."""
        if self.gpu is not None:
            self.gpu.close()
            self.gpu = None


def _spec(model: Any, requested: PreprocessSpec | str | None) -> tuple[PreprocessSpec, str]:
    """The preprocessing spec and the name of the input it feeds."""
    from edgedl.conversion import build_spec, image_input

    manifest = model.source.manifest
    info = image_input(manifest.inputs if manifest else model.source.inputs)
    if info is None:
        raise UsageError(f"{model.path.name} has no image input (float, 4-D, 3 channels)", path=model.path,
                         fix="streaming feeds camera frames to an image model; call the model directly for others")
    if isinstance(requested, PreprocessSpec):
        return requested, info.name
    if isinstance(requested, str):
        return build_spec(info, PreprocessOptions(preset=requested), model.path), info.name
    if manifest is None or manifest.preprocess is None:
        raise UsageError("the model carries no preprocessing spec", path=model.path,
                         fix=f"pass preprocess= one of {', '.join(PRESETS)} (or a PreprocessSpec), or convert it to a bundle")
    return manifest.preprocess, manifest.preprocess_input or info.name


def _gpu_preprocessor(model: Any, spec: PreprocessSpec, mode: str) -> Any:
    """A GPU preprocessor when asked for, or (``auto``) when the model runs on the GPU and one can be made."""
    on_gpu = bool(model.on_gpu)
    if mode == "cpu" or (mode == "auto" and not on_gpu):
        return None
    if mode == "gpu" and not on_gpu:
        raise UsageError(f"GPU preprocessing needs a GPU backend; this model runs on {model.backend}",
                         fix="load it with backend='tensorrt' (or leave device_preprocess='auto')")
    from edgedl.errors import EdgeDLError
    from edgedl.runtimes.cuda.preprocess import GpuPreprocessor

    try:
        return GpuPreprocessor(spec, device=model.device)
    except EdgeDLError as exc:
        if mode == "gpu":
            raise
        log.warning("preprocessing on the CPU: %s", exc)
        return None
