"""``edgedl.convert``: an ONNX model in, a calibrated, validated bundle out."""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from edgedl.bundle import BUNDLE_SUFFIX, Bundle
from edgedl.errors import InputFileError, UsageError
from edgedl.fsutil import check_output_dir, recover_stale, sha256_file, staged_dir
from edgedl.manifest import MANIFEST_NAME, Manifest, TensorInfo, Variant
from edgedl.options import CalibrationOptions, ExportOptions, Gate, PreprocessOptions, VariantOptions
from edgedl.preprocess import PreprocessSpec
from edgedl.vocabulary import TASKS, check_choice

if TYPE_CHECKING:
    from edgedl.converters.source_model import ExportedSource

log = logging.getLogger("edgedl.convert")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def image_input(inputs: list[TensorInfo]) -> TensorInfo | None:
    """The model's image input: the first float 4-D input with 3 channels in NCHW or NHWC position."""
    for info in inputs:
        if info.dtype.startswith("float") and len(info.shape) == 4 and info.layout in ("NCHW", "NHWC"):
            return info
    return None


def build_spec(info: TensorInfo, options: PreprocessOptions, source: Path,
               fallback_size: tuple[int, int] | None = None) -> PreprocessSpec:
    """The preprocessing spec for ``info`` from a preset and per-option overrides.

    ``fallback_size`` (height, width) sizes frames for an input whose height and width are dynamic.
    """
    h, w = (info.shape[2], info.shape[3]) if info.layout == "NCHW" else (info.shape[1], info.shape[2])
    if fallback_size is not None and not (isinstance(h, int) and isinstance(w, int)):
        h, w = fallback_size
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        shape = "x".join(["1", "3", "640", "640"] if info.layout == "NCHW" else ["1", "640", "640", "3"])
        raise UsageError(f"input {info.name!r} has dynamic height/width {info.shape}", path=source,
                         fix=f"fix it with --input-shape {info.name}={shape}")
    return PreprocessSpec(width=w, height=h, layout=info.layout, **options.values())


def read_labels(labels: str | Path | Sequence[str] | None) -> list[str]:
    """Labels from a file (one per line) or a sequence."""
    if labels is None:
        return []
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"cannot read labels ({getattr(exc, 'strerror', None) or exc})", path=path,
                                 fix="pass a UTF-8 text file with one label per line") from None
        found = [line.strip() for line in lines if line.strip()]
        if not found:
            raise InputFileError("labels file is empty", path=path, fix="write one label per line")
        return found
    return [str(x) for x in labels]


def _guess_task(outputs: list[TensorInfo], labels: list[str]) -> str:
    # A single [N, K] output is a classifier; anything else needs --task to say what it is.
    if len(outputs) == 1 and len(outputs[0].shape) == 2:
        return "classify"
    return "raw"


def _variant(stage: Path, file: str, precision: str, target: str, details: dict[str, Any]) -> Variant:
    return Variant(file, precision, target, sha256_file(stage / file), details)


def convert(
    model: Any,
    output: str | Path | None = None,
    *,
    int8: bool = False,
    fp16: bool = False,
    calib_data: str | Path | None = None,
    calib_samples: int = CalibrationOptions.samples,
    calib_method: str = CalibrationOptions.method,
    recover: str = CalibrationOptions.recover,
    input_shapes: dict[str, list[int]] | None = None,
    preprocess: dict[str, Any] | None = None,
    labels: str | Path | Sequence[str] | None = None,
    task: str | None = None,
    target: str = VariantOptions.target,
    allow_mixed: bool = VariantOptions.allow_mixed,
    min_cosine: float = Gate.min_cosine,
    min_top1: float = Gate.min_top1,
    min_detections: float = Gate.min_detections,
    holdout: int = CalibrationOptions.holdout,
    seed: int = CalibrationOptions.seed,
    example_inputs: Any = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = False,
    dynamic_hw: bool = False,
    layout: str | None = None,
    tolerance: float | None = None,
    exporter: str = ExportOptions.exporter,
    force: bool = False,
    show: bool = False,
) -> Bundle:
    """Convert an ONNX model into a bundle folder (``NAME.edgedl``) and return it opened.

    ``int8`` calibrates on ``calib_data`` (a folder of images, a ``.npy`` or ``.npz``;
    the shipped photographs when omitted for an image model), times the INT8 schemes
    on this machine and keeps the fastest that passes the ``min_cosine``/``min_top1``
    gate against FP32 on held-out samples, repairing it if needed: first by ``recover``'s
    techniques (``"auto"``: cross-layer equalization, per-tensor range choice, bias correction, adaptive
    rounding; ``"none"``; or a comma-separated list of them), each kept only where it helps, then by
    keeping the layers INT8 still hurts most in float. A
    detector (``task="detect"``) whose held-out samples hold at least 20 FP32 detections is
    judged by them instead of by each score row's cosine: the variant must find
    ``min_detections`` of FP32's detections (same class, IoU ≥ 0.5) and FP32 that share of its own.
    ``target="tensorrt"`` or ``"all"`` also writes the TensorRT Q/DQ variant and a
    TensorRT calibration cache. An INT8 variant must run most of its convolutions and matrix products in
    INT8: when the best passing mix keeps more than a quarter of them in float, convert raises
    :class:`~edgedl.errors.AccuracyGateError` naming that mix, unless ``allow_mixed`` writes it, labelled
    ``int8-mixed`` in the manifest. ``fp16`` adds a half-precision variant. Nothing is
    written unless every step succeeds; an existing output is kept unless ``force``, which
    replaces a bundle or an empty folder and nothing else. A conversion killed midway leaves
    the previous bundle (or none); the next one cleans up after it.

    ``model`` may also be a PyTorch or Keras model: a ``torch.nn.Module`` (with ``example_inputs``),
    a ``keras.Model``, or a ``.pt2``/``.ts``/``.pt``/``.keras``/``.h5`` file or SavedModel folder. It is
    exported to ONNX (opset 17; ``input_names``/``output_names``, ``dynamic_batch``, ``dynamic_hw``,
    ``exporter``), ``layout="NCHW"``/``"NHWC"`` transposes 4-D inputs in the graph, and the source model
    and ONNX Runtime are run on the same inputs: an output off by more than ``tolerance`` (relative,
    default 1e-3) fails the conversion; the errors go into ``manifest.validation["source"]``.
    ``dynamic_batch`` also frees an ONNX file's batch dim, for batched multi-camera streams, once a batch of
    two is shown to compute each row as the model does alone.
    """
    # Each group checks its own values as it is made, so bad options fail before any file is read.
    variants = VariantOptions(int8=int8, fp16=fp16, target=target, allow_mixed=allow_mixed)
    if task is not None:
        check_choice(task, TASKS, "task")
    calibration = CalibrationOptions(data=calib_data, samples=calib_samples, holdout=holdout, method=calib_method,
                                     seed=seed, recover=recover)
    export = ExportOptions(input_shapes=input_shapes, example_inputs=example_inputs, input_names=input_names,
                           output_names=output_names, dynamic_batch=dynamic_batch, dynamic_hw=dynamic_hw,
                           layout=layout, exporter=exporter, tolerance=tolerance)
    preprocessing = PreprocessOptions.from_mapping(preprocess)
    gate = Gate(min_cosine=min_cosine, min_top1=min_top1, min_detections=min_detections)
    if isinstance(model, str) and _URL.match(model):
        raise InputFileError(f"model {model!r} is a URL: convert reads local files",
                             fix="download it first (for example curl -LO URL) and pass the file")
    from edgedl.converters.onnx_clean import clean_model
    from edgedl.loading.onnx_io import describe_io

    source, loaded, exported = _source_model(model, export)
    target_dir = Path(output) if output is not None else source.with_name(source.stem + BUNDLE_SUFFIX)
    # Checked now, so a long conversion is not lost at the end; a killed run's leftovers first (may restore the output).
    recover_stale(target_dir)
    check_output_dir(target_dir, force, MANIFEST_NAME)
    label_list = read_labels(labels)
    log.info("cleaning %s", source)
    # Shapes of an exported model were applied at export, in the source model's own layout.
    proto = clean_model(loaded, None if exported is not None else input_shapes, source=source)
    if export.dynamic_batch and exported is None:  # a framework model got its dynamic batch at export
        from edgedl.converters.dynamic_batch import make_batch_dynamic

        proto = make_batch_dynamic(proto, source)
    inputs, outputs = describe_io(proto)
    if exported is not None:  # the framework knows each input's layout; describe_io only guesses
        for info in inputs:
            info.layout = exported.layouts.get(info.name, info.layout)
    image = image_input(inputs)
    size = exported.image_size(image.name) if exported is not None and image is not None else None
    spec = build_spec(image, preprocessing, source, size) if image is not None else None
    task = task or _guess_task(outputs, label_list)
    if task == "classify" and label_list and isinstance(outputs[0].shape[-1], int) \
            and outputs[0].shape[-1] != len(label_list):
        raise UsageError(f"{len(label_list)} labels for {outputs[0].shape[-1]} classes", path=labels,
                         fix="give one label per class, in class-index order")
    source_report = None
    if exported is not None:
        from edgedl.converters.source_check import verify_export

        source_report = verify_export(exported, proto, outputs, spec, image.name if image else None, export,
                                      calibration)

    source_info = exported.info if exported is not None else {
        "file": source.name, "sha256": sha256_file(source), "format": "onnx"}
    with staged_dir(target_dir, force=force, replace_only=MANIFEST_NAME) as stage:
        # Scratch files go in the staging folder's private parent, so a killed conversion's are cleaned with it.
        scratch = stage.parent / "scratch"
        scratch.mkdir()
        log.info("writing model.onnx into %s", stage)
        onnx.save_model(proto, str(stage / "model.onnx"))
        manifest = Manifest(
            name=source.stem, source={**source_info, "opset": max(
                (o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)},
            inputs=inputs, outputs=outputs, variants={"fp32": _variant(stage, "model.onnx", "fp32", "any", {})},
            task=task, labels=label_list, preprocess=spec, preprocess_input=image.name if image else None,
            edgedl_version=_version(), created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        if variants.int8 or variants.fp16:
            from edgedl.converters.quantize_flow import quantize_into

            log.info("calibrating, quantizing and validating (%s)", variants)
            quantize_into(manifest, proto, stage, scratch, variants, calibration, gate, image, show)
        if source_report is not None:
            manifest.validation["source"] = source_report
        log.info("writing %s", MANIFEST_NAME)
        (stage / MANIFEST_NAME).write_text(manifest.dumps(), encoding="utf-8")
    return Bundle.open(target_dir, verify=False)  # every file was hashed as it was written


def _source_model(model: Any, export: ExportOptions) -> tuple[Path, onnx.ModelProto, ExportedSource | None]:
    """The model's path (a framework model's name when in memory), its ONNX, and the export record if exported."""
    from edgedl.converters.source_model import export_source, is_framework_model
    from edgedl.loading.onnx_load import load_onnx

    log.info("loading %s", model if isinstance(model, (str, Path)) else type(model).__name__)
    if is_framework_model(model):
        exported = export_source(model, export)
        return exported.path, exported.proto, exported
    if export.framework_options_given:
        raise UsageError("layout, example inputs, dynamic height/width and tolerance apply to PyTorch and Keras "
                         "models", path=model, fix="for an ONNX file, fix shapes with --input-shape")
    return Path(model), load_onnx(Path(model)), None


def _version() -> str:
    from edgedl.about import __version__

    return __version__


