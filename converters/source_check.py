"""Does the ONNX model compute what the PyTorch or Keras model computes? Run both on the same inputs.

Inputs: random ones shaped like the export example (an image input gets random frames pushed through
the bundle's preprocessing, so values sit in the range the model will see), plus calibration samples
when the user gave some. Per output: max absolute error, mean absolute error, and max relative error,
measured against the output's largest magnitude (``max |onnx - source| / max |source|``) so that
near-zero elements do not inflate it. The gate is that relative error; exporters that work agree to
about 1e-6, and broken exports are off by 1e-2 or more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from edgedl.errors import AccuracyGateError
from edgedl.manifest import TensorInfo
from edgedl.options import CalibrationOptions, ExportOptions
from edgedl.preprocess import PreprocessSpec, preprocess
from edgedl.types import Sample


def random_samples(example: Sample, spec: PreprocessSpec | None, image_name: str | None, count: int,
                   seed: int) -> list[Sample]:
    """``count`` random feeds shaped and typed like ``example``; the image input goes through ``spec``."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        feed = {}
        for name, array in example.items():
            if name == image_name and spec is not None:
                frames = [_frame(rng, spec) for _ in range(array.shape[0])]
                feed[name] = np.concatenate([preprocess(spec, f)[0] for f in frames]).astype(array.dtype)
            elif array.dtype.kind == "f":
                feed[name] = rng.standard_normal(array.shape).astype(array.dtype)
            else:  # ids, masks, counts: zeros are valid for every embedding and index
                feed[name] = np.zeros_like(array)
        samples.append(feed)
    return samples


def _frame(rng: np.random.Generator, spec: PreprocessSpec) -> np.ndarray:
    """A random BGR frame with smooth structure and noise, a little larger than the model input."""
    import cv2

    h, w = spec.height + 7, spec.width + 5
    coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def compare(run_source: Callable[[Sample], list[np.ndarray]], proto: onnx.ModelProto, samples: list[Sample],
            outputs: list[TensorInfo]) -> dict[str, dict[str, float]]:
    """Per-output errors of ONNX Runtime against the source model over ``samples``."""
    from edgedl.loading.ort_session import cpu_session

    session = cpu_session(proto.SerializeToString())
    names = [o.name for o in outputs]
    worst: dict[str, dict[str, Any]] = {n: {"max_abs": 0.0, "scale": 0.0, "sum_abs": 0.0, "count": 0} for n in names}
    for feed in samples:
        ours = session.run(names, feed)
        theirs = run_source(feed)
        if len(theirs) != len(ours):
            raise AccuracyGateError(f"the source model returns {len(theirs)} outputs, the ONNX model {len(ours)}",
                                    fix="report this model: the exporter changed its outputs")
        for name, a, b in zip(names, ours, theirs, strict=True):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if a.shape != b.shape:
                raise AccuracyGateError(f"output {name!r} has shape {list(a.shape)} in ONNX, {list(b.shape)} in the "
                                        "source model", fix="report this model: the exporter changed an output")
            diff = np.abs(a - b)
            entry = worst[name]
            entry["max_abs"] = max(entry["max_abs"], float(diff.max()) if diff.size else 0.0)
            if not np.isfinite(diff).all():
                entry["max_abs"] = float("inf")
            entry["scale"] = max(entry["scale"], float(np.abs(b).max()) if b.size else 0.0)
            entry["sum_abs"] += float(np.nan_to_num(diff, nan=np.inf).sum())
            entry["count"] += diff.size
    report = {}
    for name, entry in worst.items():
        relative = entry["max_abs"] / entry["scale"] if entry["scale"] > 0 else (0.0 if entry["max_abs"] == 0 else
                                                                                 float("inf"))
        report[name] = {"max_abs_error": entry["max_abs"], "max_rel_error": relative,
                        "mean_abs_error": entry["sum_abs"] / max(entry["count"], 1), "max_abs_value": entry["scale"]}
    return report


def check_against_source(run_source: Callable[[Sample], list[np.ndarray]], proto: onnx.ModelProto,
                         outputs: list[TensorInfo], random: list[Sample], calibration: list[Sample],
                         tolerance: float, framework: str, fix: str | None = None) -> dict[str, Any]:
    """Compare, record, and raise :class:`AccuracyGateError` when an output is off by more than ``tolerance``."""
    report = compare(run_source, proto, random + calibration, outputs)
    worst_name = max(report, key=lambda n: report[n]["max_rel_error"])
    worst = report[worst_name]["max_rel_error"]
    record = {
        "passed": bool(worst <= tolerance), "tolerance": tolerance, "max_rel_error": worst,
        "metric": "max |onnx - source| / max |source|, per output", "framework": framework,
        "samples": {"random": len(random), "calibration": len(calibration)}, "outputs": report,
    }
    if not record["passed"]:
        raise AccuracyGateError(
            f"the ONNX export differs from the {framework} model: output {worst_name!r} is off by "
            f"{worst:.3g} relative (max abs {report[worst_name]['max_abs_error']:.3g}), over the tolerance {tolerance:g}",
            fix=fix or "raise --tolerance if that is acceptable; otherwise an op exported wrongly (try --exporter)")
    return record


def verify_export(exported: Any, proto: onnx.ModelProto, outputs: list[TensorInfo], spec: PreprocessSpec | None,
                  image_name: str | None, export: ExportOptions, calibration: CalibrationOptions,
                  random_count: int = 4, calibration_count: int = 4) -> dict[str, Any]:
    """The check ``convert`` runs on an exported :class:`~edgedl.converters.source_model.ExportedSource`.

    Random inputs, and ``calibration_count`` samples of the user's calibration data when given, all drawn
    with the calibration seed; the export fails beyond ``export.source_tolerance``.
    """
    from edgedl.converters.calibration import load_calibration
    from edgedl.manifest import TensorInfo as Info

    random = random_samples(exported.example, spec, image_name, random_count, calibration.seed)
    samples: list[Sample] = []
    if calibration.data is not None:
        inputs = [Info(n, a.dtype.name, [-1, *a.shape[1:]]) for n, a in exported.example.items()]
        samples = load_calibration(calibration.data, inputs, spec, image_name, samples=calibration_count, holdout=0,
                                   seed=calibration.seed).calibration
    fix = None
    if exported.info.get("exporter") == "torchscript":
        fix = ("the TorchScript exporter records one path through Python if/else on tensor values: make forward() "
               "branch-free (torch.where, torch.cond), or raise --tolerance if the difference is acceptable")
    return check_against_source(exported.run, proto, outputs, random, samples, export.source_tolerance,
                                exported.framework, fix)
