"""OpenVINO on x86 CPUs (``pip install edgedl[openvino]``).

OpenVINO runs Q/DQ INT8 models with its own int8 kernels, often well ahead of
ONNX Runtime on the same CPU; whether it wins for a given model is measured at
load time (see ``cpu_choice``), not assumed.

OpenVINO's CPU plugin computes in bfloat16 by default on CPUs that have it
(AVX512-BF16, AMX). That silently changes results against what the bundle was
validated with, so every variant is compiled with an f32 hint (an FP16 variant keeps
its FP16 weights; its float math stays float32).
"""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edgedl.errors import DeviceError, MissingDependencyError, UsageError
from edgedl.runtimes.base import BackendBase, Capabilities, LoadOptions, TensorSpec
from edgedl.runtimes.onnxruntime.cpu import cpu_variant
from edgedl.runtimes.source import ModelSource

NAME = "openvino"
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def probe() -> str | None:
    """Why OpenVINO cannot run here, or None."""
    if platform.machine().lower() not in X86:
        return f"used on x86 CPUs only (this is {platform.machine()})"
    if importlib.util.find_spec("openvino") is None:
        return "the openvino module is not installed (pip install 'edgedl[openvino]')"
    return None


def _qdq(source: ModelSource, key: str) -> bool:
    return source.has(key) and str(source.file(key).details.get("format", "QDQ")).upper() == "QDQ"


def choose_variant(source: ModelSource, precision: str) -> tuple[str, str]:
    """The CPU INT8 variant when it is Q/DQ (OpenVINO fuses Q/DQ into int8 kernels), else FP32.

    Never the TensorRT variant: its signed int8 activations are for TensorRT, and x86 int8 kernels
    lose accuracy on them (the test CNN: cosine 0.975 against FP32 in OpenVINO, 0.99993 with the same
    Q/DQ executed exactly), while its check in convert models TensorRT's exact arithmetic.
    """
    if precision == "auto" or precision == "int8":
        if _qdq(source, "int8"):
            return "int8", "int8"
        if precision == "int8":
            if source.has("int8") or source.has("int8-trt"):
                raise UsageError("OpenVINO runs a Q/DQ CPU INT8 variant only, and this bundle has none (its CPU "
                                 "variant uses ONNX Runtime's QOperator ops, or it has only the TensorRT one)",
                                 path=source.path, fix="use backend onnxruntime for INT8, or precision fp32 on openvino")
            cpu_variant(source, "int8")  # says the bundle has no INT8 at all
        return "fp32", "fp32"
    if precision == "fp16" and not source.has("fp16"):
        raise UsageError(f"{source.path.name} has no fp16 variant", path=source.path, fix="re-run edgedl convert --fp16")
    return source.file(precision).key, precision


def _spec(port: Any, declared: dict[str, list[int | str]]) -> TensorSpec:
    """A port's spec under the model's own tensor name (a port can carry several, e.g. after FP16 casts),
    with dynamic dims named as the model names them."""
    name = next((n for n in sorted(port.get_names()) if n in declared), port.get_any_name())
    symbolic = declared.get(name, [])
    dims = tuple(d.get_length() if d.is_static else (symbolic[axis] if axis < len(symbolic) else "?")
                 for axis, d in enumerate(port.get_partial_shape()))
    return TensorSpec(name, np.dtype(port.get_element_type().to_dtype()), dims)


class OpenVinoBackend(BackendBase):
    """One compiled model and one infer request, inputs shared (not copied) with OpenVINO."""

    name = NAME
    capabilities = Capabilities(layer_profiler="openvino-perf-counters")

    def __init__(self, compiled: Any, variant: str, precision: str, threads: int,
                 declared: dict[str, list[int | str]], path: Path) -> None:
        self._compiled = compiled
        self._path = path
        self._request = compiled.create_infer_request()
        self.variant = variant
        self.precision = precision
        self.inputs = [_spec(p, declared) for p in compiled.inputs]
        self.outputs = [_spec(p, declared) for p in compiled.outputs]
        self._output_names = [o.name for o in self.outputs]
        self._threads = threads

    def infer(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run synchronously; outputs are copies, safe to keep across calls."""
        result = self._request.infer(feeds, share_inputs=True)
        return dict(zip(self._output_names, result.to_tuple(), strict=True))

    def profile_layers(self, feeds: dict[str, Any], runs: int) -> Any:
        """Per-layer times from OpenVINO's counters, in a second compile of the same file with this one's settings."""
        from edgedl.runtimes.openvino.layers import openvino_layers

        return openvino_layers(self._path, feeds, runs, self._threads, self.describe()["inference_precision"])

    def describe(self) -> dict[str, Any]:
        """Device, threads and the inference precision OpenVINO actually uses."""
        return {"device": "CPU", "threads": self._threads,
                "inference_precision": str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))}

    def close(self) -> None:
        """Drop the request and the compiled model."""
        self._request = self._compiled = None


def open(source: ModelSource, precision: str, options: LoadOptions) -> OpenVinoBackend:  # noqa: A001
    """Compile the chosen variant for the CPU with a latency hint and one thread per physical core."""
    reason = probe()
    if reason:
        raise MissingDependencyError(f"OpenVINO cannot run here: {reason}", fix="pip install 'edgedl[openvino]' on x86")
    import openvino as ov

    from edgedl.loading.ort_session import physical_cores

    variant, precision = choose_variant(source, precision)
    threads = physical_cores()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    path = source.file(variant).path
    try:
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    except RuntimeError as exc:  # OpenVINO reports unsupported ops and bad graphs as RuntimeError
        first = next((line.strip() for line in str(exc).splitlines() if "--" in line), "see --verbose")
        raise DeviceError(f"OpenVINO cannot compile variant {variant!r} ({first})", path=path,
                          fix="use backend onnxruntime for this bundle") from exc
    declared = {t.name: t.shape for t in source.inputs + source.outputs}
    return OpenVinoBackend(compiled, variant, precision, threads, declared, path)
