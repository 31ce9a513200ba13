"""The quantization half of ``convert``: calibrate, build variants, validate, record."""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedl.converters.calibration import CalibrationSet, load_calibration
from edgedl.converters.fp16 import overflowing_nodes, to_fp16
from edgedl.converters.int8 import Candidate, best_cpu_int8, tensorrt_int8, with_fp16_float
from edgedl.converters.int8_share import Int8Share, refuse_float
from edgedl.converters.qdq_fp16 import default_opset
from edgedl.converters.quantize import Quantizer
from edgedl.converters.recover import RecoveringEvaluator
from edgedl.converters.validate import agreement, detection_decoder, latencies_ms, passes, require_evidence, run_all
from edgedl.errors import AccuracyGateError
from edgedl.fsutil import sha256_file
from edgedl.loading.calib_cache import DEFAULT_TRT_VERSION, amax_from_ranges, write_cache
from edgedl.loading.ort_session import cpu_session
from edgedl.manifest import Manifest, TensorInfo, Variant
from edgedl.options import CalibrationOptions, Gate, VariantOptions
from edgedl.types import noise_samples
from edgedl.vocabulary import MIXED_INT8

log = logging.getLogger("edgedl.convert")


def _ranges_amax(ranges: Any) -> dict[str, float]:
    """Absolute maxima per tensor from ORT ``TensorsData``."""
    bounds = {}
    for name, data in ranges.data.items():
        lo, hi = data.range_value
        bounds[name] = (float(np.min(lo)), float(np.max(hi)))
    return amax_from_ranges(bounds)


def _settle_share(candidate: Candidate, proto: onnx.ModelProto, variants: VariantOptions, key: str,
                  fp32_ms: float) -> tuple[Int8Share, str]:
    """The variant's INT8 share and label (``int8``, or ``int8-mixed`` when the user allowed more than a
    quarter in float); without that permission such a variant is refused, before anything is written."""
    share = candidate.share(proto)
    if share.mostly_int8:
        return share, "int8"
    if not variants.allow_mixed:
        raise refuse_float(key, candidate.scheme.name, share, candidate.report, fp32_ms / candidate.latency_ms)
    log.warning("the %s variant keeps %d of its %d convolutions and matrix products in float; written as %s "
                "(--allow-mixed)", key, share.compute - share.int8, share.compute, MIXED_INT8)
    return share, MIXED_INT8


def quantize_into(manifest: Manifest, proto: onnx.ModelProto, stage: Path, tmp: Path, variants: VariantOptions,
                  calibration: CalibrationOptions, gate: Gate, image: TensorInfo | None, show: bool) -> None:
    """Add the INT8 and/or FP16 ``variants`` to ``stage`` and fill the manifest's calibration and validation."""
    from edgedl.progress import counter

    fp32_path = stage / "model.onnx"
    if variants.int8 or calibration.data is not None or image is not None:
        data = load_calibration(calibration.data, manifest.inputs, manifest.preprocess, image.name if image else None,
                                samples=calibration.samples, holdout=calibration.holdout, seed=calibration.seed)
    else:
        data = CalibrationSet([], noise_samples(manifest.inputs, 8, calibration.seed),
                              {"kind": "random", "seed": calibration.seed})
    if not data.holdout:
        data.holdout = data.calibration[:1]
        data.summary["warning"] = "too few samples to hold any out: validated on a calibration sample"
        log.warning("too few calibration samples to hold some out for validation; pass more --calib-data")
    fp32_session = cpu_session(fp32_path)
    reference = run_all(fp32_session, data.holdout)
    classify = manifest.task == "classify"
    decode = detection_decoder(manifest.task, [(o.name, tuple(o.shape)) for o in manifest.outputs])
    require_evidence(reference, classify, decode, "--calib-data")
    with counter("calibrating", len(data.calibration) * variants.calibration_passes, show) as tick:
        quantizer = Quantizer(fp32_path, data.calibration or data.holdout, calibration.method, tmp, on_sample=tick)
        evaluator = RecoveringEvaluator(proto, quantizer, data.holdout, reference, gate, classify, tmp, decode,
                                        techniques=calibration.techniques)
        validation: dict[str, Any] = {"samples": len(data.holdout), "gate": asdict(gate)}
        sessions: dict[str, Any] = {"fp32": fp32_session}
        results: dict[str, dict[str, Any]] = {}
        if variants.cpu_int8:
            winner, tried, fp32_ms = best_cpu_int8(evaluator, data.holdout[0], fp32_session)
            share, label = _settle_share(winner, proto, variants, "int8", fp32_ms)
            shutil.copyfile(winner.path, stage / "model.int8.onnx")
            manifest.variants["int8"] = Variant("model.int8.onnx", "int8", "cpu", sha256_file(stage / "model.int8.onnx"),
                                                {**winner.scheme.describe(), "label": label,
                                                 "int8_share": share.describe()})
            results["int8"] = {"outputs": winner.report, "scheme": winner.scheme.name, "label": label,
                               "excluded_nodes": winner.excluded, "int8_share": share.describe(), "passed": True,
                               "recovery": evaluator.recovery_record(winner)}
            validation["candidates"] = [c.summary(fp32_ms) for c in tried]
            sessions["int8"] = cpu_session(stage / "model.int8.onnx")
        if variants.tensorrt_int8:
            trt = tensorrt_int8(evaluator)
            share, label = _settle_share(trt, proto, variants, "int8-trt", float("nan"))
            magnitudes = _ranges_amax(evaluator.quantizer_for(trt).ranges(True))
            trt = with_fp16_float(evaluator, trt, overflowing_nodes(proto, magnitudes))
            shutil.copyfile(trt.path, stage / "model.int8.trt.onnx")
            write_cache(stage / "calibration.cache", magnitudes)
            manifest.variants["int8-trt"] = Variant(
                "model.int8.trt.onnx", "int8", "tensorrt", sha256_file(stage / "model.int8.trt.onnx"),
                {**trt.scheme.describe(), "label": label, "int8_share": share.describe(),
                 "float_precision": trt.float_precision, "opset": default_opset(onnx.load(str(trt.path))),
                 "calibration_cache": "calibration.cache", "calibration_cache_header_version": DEFAULT_TRT_VERSION})
            results["int8-trt"] = {"outputs": trt.report, "scheme": trt.scheme.name, "label": label,
                                   "excluded_nodes": trt.excluded, "int8_share": share.describe(),
                                   "float_precision": trt.float_precision, "passed": True,
                                   "recovery": evaluator.recovery_record(trt)}
            sessions["int8-trt"] = cpu_session(stage / "model.int8.trt.onnx")
        if variants.fp16:
            magnitudes = {}
            if data.calibration:
                magnitudes = _ranges_amax(quantizer.ranges(False))
            keep = overflowing_nodes(proto, magnitudes)
            onnx.save_model(to_fp16(proto, keep), str(stage / "model.fp16.onnx"))
            report = agreement(reference, run_all(cpu_session(stage / "model.fp16.onnx"), data.holdout), classify,
                               decode)
            ok, reason = passes(report, gate)
            if not ok:
                raise AccuracyGateError(f"FP16 variant fails the accuracy gate ({reason})",
                                        fix="lower --min-cosine, or report the model: an op overflows in FP16")
            manifest.variants["fp16"] = Variant("model.fp16.onnx", "fp16", "any",
                                                sha256_file(stage / "model.fp16.onnx"), {"kept_fp32_nodes": keep})
            results["fp16"] = {"outputs": report, "kept_fp32_nodes": keep, "passed": True}
            sessions["fp16"] = cpu_session(stage / "model.fp16.onnx")
    times = latencies_ms(sessions, data.holdout[0])
    validation["latency_ms"] = {k: round(v, 4) for k, v in times.items()}
    for key, entry in results.items():
        entry["latency_ms"] = round(times[key], 4)
        entry["speedup_vs_fp32"] = round(times["fp32"] / times[key], 3)
    validation["variants"] = results
    validation["note"] = "latency: median ms on this machine's CPU (ONNX Runtime), measured alternately in one run"
    manifest.validation = validation
    manifest.calibration = {**data.summary, "method": calibration.method if variants.int8 else None,
                            "calibration_samples": len(data.calibration), "holdout_samples": len(data.holdout)}
