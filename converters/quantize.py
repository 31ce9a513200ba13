"""INT8 quantization with ONNX Runtime's static quantizer.

Calibration (running the model over the samples to collect tensor ranges) is
done once per (method, symmetry) and reused by every candidate scheme, so
trying several schemes costs a quantization pass each, not a calibration each.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedl.errors import MissingDependencyError
from edgedl.types import Sample
from edgedl.vocabulary import CALIBRATION_METHODS

log = logging.getLogger("edgedl.quantize")

# TensorRT runs these layers in INT8 when their inputs come through Q/DQ: the convolutions and matrix
# products (inputs and weights), and the pools and resizes it fuses with them. Their outputs stay unquantized:
# a Q/DQ on a convolution's output also rounds what its SiLU's Sigmoid and Mul read, which TensorRT fuses into
# the convolution anyway, and on YOLO-style detectors that rounding is what costs the class scores (worst score
# row's cosine 0.20 with it, 0.62 without on YOLOv8n). Concat inputs stay unquantized too: measured on
# tools/hard_models.py's detector it adds Q/DQ at the box/score output concat (box cosine 0.9999) for no INT8 layer.
TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
                     "Resize")


@dataclass(frozen=True)
class Scheme:
    """One way of quantizing a model: format, integer types, which ops, which options."""

    name: str
    target: str  # "cpu" or "tensorrt"
    qdq: bool = True
    activations_signed: bool = False
    op_types: tuple[str, ...] | None = None  # None: every op ORT can quantize
    symmetric_activations: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Manifest form."""
        return {"scheme": self.name, "format": "QDQ" if self.qdq else "QOperator",
                "activations": "int8" if self.activations_signed else "uint8", "weights": "int8 per-channel",
                "op_types": list(self.op_types) if self.op_types else "all",
                "symmetric_activations": self.symmetric_activations}


#: CPU candidates. Which is fastest depends on the CPU and the model, so convert times them all.
CPU_SCHEMES = (
    Scheme("qdq-u8s8-all", "cpu"),
    Scheme("qdq-u8s8-conv-matmul", "cpu", op_types=("Conv", "ConvTranspose", "MatMul", "Gemm")),
    Scheme("qoperator-u8s8-all", "cpu", qdq=False),
)

#: TensorRT explicit quantization: symmetric int8 (zero point 0), per-channel weights, Q/DQ on
#: float weights (TensorRT folds them), one dedicated Q/DQ pair per consumer so each fuses, inputs only
#: (see TENSORRT_OP_TYPES; pools and resizes quantized whether or not their producer is), float biases
#: (TensorRT takes them in float; an int32 bias's scale, input scale times weight scale, underflows FP16).
TENSORRT_SCHEME = Scheme(
    "qdq-s8s8-tensorrt", "tensorrt", activations_signed=True, op_types=TENSORRT_OP_TYPES,
    symmetric_activations=True,
    extra={"AddQDQPairToWeight": True, "DedicatedQDQPair": True, "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
           "OpTypesToExcludeOutputQuantization": list(TENSORRT_OP_TYPES), "ForceQuantizeNoInputCheck": True,
           "QuantizeBias": False},
)


#: Calibrator options per method. ONNX Runtime's entropy calibrator defaults to 128 histogram bins and 128
#: quantized bins, which leaves it one threshold to choose, the histogram's edge: entropy ranges were minmax
#: ranges (a TensorRT variant byte-identical to minmax's). With 512 bins it chooses among 193 thresholds, from
#: a quarter of the largest value up, the one whose 128-level quantization loses the least information
#: (TensorRT's calibrator searches 2048 bins; ONNX Runtime's pure-Python search takes minutes per model there).
CALIBRATOR_OPTIONS: dict[str, dict[str, Any]] = {"entropy": {"num_bins": 512, "num_quantized_bins": 128}}


def _ort_quantization():
    try:
        from onnxruntime import quantization
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise MissingDependencyError(f"onnxruntime.quantization is unavailable ({exc})",
                                     fix="pip install -U onnxruntime") from None
    return quantization


class _Reader:
    """A rewindable CalibrationDataReader over in-memory samples."""

    def __init__(self, samples: list[Sample], on_sample: Callable[[], None] | None = None) -> None:
        self.samples = samples
        self.on_sample = on_sample
        self.position = 0

    def get_next(self) -> Sample | None:
        if self.position >= len(self.samples):
            return None
        self.position += 1
        if self.on_sample is not None:
            self.on_sample()
        return self.samples[self.position - 1]

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.samples)


class _DropPreprocessHint(logging.Filter):
    """ORT's quantizer advises running its shape pre-processing; clean_model already did the equivalent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider")


@contextlib.contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(hint)


class Quantizer:
    """Quantizes one FP32 model under several schemes from one set of calibration samples."""

    def __init__(self, fp32_path: Path, samples: list[Sample], method: str, workdir: Path,
                 on_sample: Callable[[], None] | None = None) -> None:
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        self.fp32_path = fp32_path
        self.reader = _Reader(samples, on_sample)
        self.method = method
        self.workdir = workdir
        self._ranges: dict[bool, Any] = {}
        self._supports_cache = "calibration_cache_path" in inspect.signature(
            _ort_quantization().quantize_static).parameters

    def _method(self):
        q = _ort_quantization()
        return {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                "percentile": q.CalibrationMethod.Percentile}[self.method]

    def ranges(self, symmetric: bool) -> Any:
        """Tensor ranges (ORT ``TensorsData``) from calibration, computed once per symmetry."""
        if symmetric not in self._ranges:
            q = _ort_quantization()
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                calibrator = q.create_calibrator(
                    self.fp32_path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                    calibrate_method=self._method(),
                    extra_options={"symmetric": symmetric, **CALIBRATOR_OPTIONS.get(self.method, {})})
                self.reader.rewind()
                calibrator.collect_data(self.reader)
                self._ranges[symmetric] = calibrator.compute_data()
                del calibrator
        return self._ranges[symmetric]

    def _cache_file(self, symmetric: bool) -> Path:
        path = self.workdir / f"ranges-{self.method}-{'sym' if symmetric else 'asym'}.json"
        if not path.exists():
            from onnxruntime.quantization.calibrate import save_tensors_data

            save_tensors_data(self.ranges(symmetric), path)
        return path

    def quantize(self, scheme: Scheme, output: Path, exclude: list[str] | None = None) -> Path:
        """Write ``output``: the FP32 model quantized under ``scheme``, leaving ``exclude`` nodes in float."""
        q = _ort_quantization()
        extra = {"ActivationSymmetric": scheme.symmetric_activations, "WeightSymmetric": True,
                 "CalibTensorRangeSymmetric": scheme.symmetric_activations, **scheme.extra}
        kwargs: dict[str, Any] = {}
        if self._supports_cache:
            kwargs["calibration_cache_path"] = str(self._cache_file(scheme.symmetric_activations))
        else:  # older onnxruntime: it calibrates again itself
            self.reader.rewind()
            kwargs["calibration_data_reader"] = self.reader
        with _quiet_preprocess_hint():
            q.quantize_static(
                str(self.fp32_path), str(output),
                quant_format=q.QuantFormat.QDQ if scheme.qdq else q.QuantFormat.QOperator,
                op_types_to_quantize=list(scheme.op_types) if scheme.op_types else None,
                per_channel=True,
                activation_type=q.QuantType.QInt8 if scheme.activations_signed else q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                nodes_to_exclude=list(exclude or []),
                calibrate_method=self._method(),
                extra_options=extra,
                **kwargs,
            )
        return output
