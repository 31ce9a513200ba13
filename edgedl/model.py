"""``edgedl.load``: a bundle or an ONNX file in, the fastest engine this machine has out.

    model = edgedl.load("model.edgedl")          # TensorRT on a Jetson, OpenVINO or ONNX Runtime on a CPU
    outputs = model(frame_tensor)                # {"logits": array}
    with edgedl.load("model.edgedl", backend="tensorrt") as model:
        ...                                      # GPU memory is released when the block ends
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedl.errors import UsageError
from edgedl.runtimes.base import Backend, Capabilities, InputCheck, LoadOptions, TensorSpec
from edgedl.runtimes.source import ModelSource

if TYPE_CHECKING:
    from edgedl.profiling.layers import LayerProfile
    from edgedl.results import Result


class Model:
    """A loaded model. Call it with numpy arrays (or, on a GPU backend, CUDA device arrays); get outputs by name."""

    def __init__(self, backend: Backend, source: ModelSource, skipped: list[tuple[str, str]] | None = None,
                 device: int = 0) -> None:
        self._backend = backend
        self.device = device
        self.source = source
        self.skipped = list(skipped or [])
        self._check = InputCheck(backend.inputs, backend.name, device_inputs=backend.capabilities.device_io)
        self._closed = False

    @property
    def backend(self) -> str:
        """The runtime in use: ``tensorrt``, ``onnxruntime-gpu``, ``openvino`` or ``onnxruntime``."""
        return self._backend.name

    @property
    def precision(self) -> str:
        """``fp32``, ``fp16`` or ``int8``."""
        return self._backend.precision

    @property
    def variant(self) -> str:
        """The bundle variant loaded (``fp32``, ``int8``, ``int8-trt``, ``fp16``)."""
        return self._backend.variant

    @property
    def inputs(self) -> list[TensorSpec]:
        """Input names, dtypes and shapes (a dynamic dim is its name, or ``?``)."""
        return self._backend.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        """Output names, dtypes and shapes."""
        return self._backend.outputs

    @property
    def path(self) -> Path:
        """The bundle folder or ONNX file."""
        return self.source.path

    @property
    def capabilities(self) -> Capabilities:
        """What the backend can do beyond inference: device arrays in and out, a per-layer profiler."""
        return self._backend.capabilities

    @property
    def on_gpu(self) -> bool:
        """Whether the backend runs on a CUDA GPU and takes device arrays (GPU preprocessing feeds it directly)."""
        return self._backend.capabilities.device_io

    @property
    def last_device_ms(self) -> float | None:
        """GPU time of the last call (copies included), from CUDA events; None on CPU backends."""
        return self._backend.last_device_ms

    def describe(self) -> dict[str, Any]:
        """What was loaded and where: backend, precision, variant, device details, backends skipped."""
        return {"backend": self.backend, "precision": self.precision, "variant": self.variant, "path": str(self.path),
                **self._backend.describe(), "skipped": dict(self.skipped)}

    def __call__(self, inputs: Any = None, /, **named: Any) -> dict[str, np.ndarray]:
        """Run the model: a dict by input name, one array (one-input models), a list in input order, or keywords."""
        if self._closed:
            raise UsageError("the model was closed", fix="load it again")
        return self._backend.infer(self._check(self._check.normalize(inputs, named)))

    def infer(self, inputs: Any = None, /, *, device_outputs: bool = False, **named: Any) -> dict[str, Any]:
        """Like calling the model; ``device_outputs=True`` (GPU backends) leaves outputs on the GPU as
        ``__cuda_array_interface__`` views that stay valid until the next call."""
        if not device_outputs:
            return self(inputs, **named)
        if self._closed:
            raise UsageError("the model was closed", fix="load it again")
        return self._backend.infer_device(self._check(self._check.normalize(inputs, named)))

    def profile_layers(self, inputs: Any, runs: int) -> LayerProfile:
        """Per-layer times over ``runs`` inferences of ``inputs``, from the runtime's own profiler.

        Profiling slows a runtime down, so these runs are separate from any latency measurement.
        Refused with a :class:`UsageError` where ``capabilities.layer_profiler`` is None.
        """
        if self._closed:
            raise UsageError("the model was closed", fix="load it again")
        return self._backend.profile_layers(self._check(self._check.normalize(inputs, {})), runs)

    def stream(self, source: Any, sink: Any = None, **options: Any) -> Iterator[Result]:
        """Run the model over a video source; yield one :class:`~edgedl.results.Result` per frame, in order.

        ``source``: ``csi://0``, ``/dev/video0`` or ``0``, ``rtsp://…``, a video file, an image folder or glob,
        ``gst://…`` or ``synthetic://shapes``. ``sink``: where annotated frames or results go as well
        (``out.mp4``, ``frames/``, ``results.jsonl``, ``display``), or a list. Other options are those of
        :class:`edgedl.Pipeline` (``conf``, ``iou``, ``top_k``, ``max_frames``, ``postprocess``, …).
        Capture, preprocessing, inference and postprocessing run in background threads; leaving the loop
        (``break``, an exception, Ctrl-C) stops them and closes the source and sinks.
        """
        from edgedl.pipeline import Pipeline

        yield from Pipeline(self, source, sink, **options).results()

    def share_cpu(self) -> None:
        """Leave the cores to other busy threads between calls, for the rest of the model's life.

        ONNX Runtime on the CPU rebuilds its session so that idle worker threads block instead of spinning
        for the next call (spinning makes ``model(x)`` in a loop fastest, and is how a model loads); other
        backends have nothing to change. A stream calls it as it starts, for its capture, preprocessing and
        postprocessing threads; call it yourself when your app keeps its own threads busy beside the model.
        """
        if self._closed:
            raise UsageError("the model was closed", fix="load it again")
        self._backend.share_cpu()

    def close(self) -> None:
        """Release the runtime's memory now (GPU buffers, engine, stream). Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.precision} ({self.variant})"
        return f"Model({str(self.path)!r}, backend={self.backend!r}, {state})"


def load(path: str | Path, backend: str = "auto", precision: str = "auto", device: int = 0, *,
         shapes: Mapping[str, Any] | None = None, batch: int | None = None, build: bool = True, rebuild: bool = False,
         dla_core: int | None = None, workspace_mib: int | None = None, progress: Any = None,
         verify: bool = True) -> Model:
    """Load a bundle (``NAME.edgedl``) or an ONNX file on the fastest backend available, or the one named.

    ``backend``: ``auto`` (TensorRT, ONNX Runtime on the GPU, OpenVINO on x86, ONNX Runtime on the CPU; one
    log line per backend skipped and why), or one of those names. ``precision``: ``auto`` (the best variant the
    bundle has for that backend), ``fp32``, ``fp16`` or ``int8``. ``device``: the CUDA device.

    TensorRT only: ``shapes`` maps inputs to a shape or (min, opt, max) for dynamic dims; ``batch`` is the batch
    the engine is tuned for where the batch dim is dynamic and ``shapes`` leaves it out (the profile's opt; 1 by
    default; ``edgedl run`` passes its number of sources, up to 8); ``build=False``
    refuses to build on a cache miss; ``rebuild`` ignores the cache; ``dla_core`` builds for a Jetson DLA;
    ``workspace_mib`` caps builder memory; ``progress`` is a ``callable(str)`` for build progress (default:
    lines on stderr; ``False``: log only).
    """
    from edgedl.runtimes.select import open_backend

    if not isinstance(device, int) or device < 0:
        raise UsageError(f"device must be a CUDA device index, got {device!r}", fix="pass device=0")
    source = ModelSource.open(path, verify=verify)
    options = LoadOptions(device=device, shapes=shapes, batch=batch, build=build, rebuild=rebuild, dla_core=dla_core,
                          workspace_mib=workspace_mib, progress=progress)
    opened, skipped = open_backend(source, backend, precision, options)
    return Model(opened, source, skipped, device)
