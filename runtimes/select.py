"""Choosing a backend: by name, or ``auto``, the fastest this machine has.

``auto`` tries TensorRT, then ONNX Runtime on the GPU, then the CPU runtimes, logging
one line for every backend it skips and why. On the CPU, OpenVINO and ONNX Runtime
are both loaded once and timed on the model (see ``cpu_choice``); the faster is kept.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from edgedl.errors import EdgeDLError, MissingDependencyError, UsageError
from edgedl.runtimes.base import Backend, LoadOptions
from edgedl.runtimes.source import ModelSource
from edgedl.vocabulary import BACKENDS, PRECISIONS

log = logging.getLogger("edgedl.runtimes")

MODULES = {"tensorrt": "edgedl.runtimes.tensorrt.backend", "onnxruntime-gpu": "edgedl.runtimes.onnxruntime.gpu",
           "openvino": "edgedl.runtimes.openvino.backend", "onnxruntime": "edgedl.runtimes.onnxruntime.cpu"}
ALIASES = {"trt": "tensorrt", "ort": "onnxruntime", "onnxrt": "onnxruntime", "ort-cpu": "onnxruntime",
           "ort-gpu": "onnxruntime-gpu", "onnxruntime-cuda": "onnxruntime-gpu", "onnxruntime-trt": "onnxruntime-gpu",
           "ov": "openvino"}
INSTALL = {"tensorrt": "on JetPack, apt-get install python3-libnvinfer and pip install 'edgedl[tensorrt]'",
           "onnxruntime-gpu": "pip install onnxruntime-gpu (on Jetson, the wheel for your JetPack)",
           "openvino": "pip install 'edgedl[openvino]' (x86 CPUs)", "onnxruntime": "pip install onnxruntime"}


def canonical(name: str) -> str:
    """The backend's canonical name, or a UsageError listing the known ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODULES:
        raise UsageError(f"unknown backend {name!r}", fix=f"use auto or one of {', '.join(BACKENDS)}")
    return key


def module(name: str) -> ModuleType:
    """The backend module (each has NAME, probe() and open())."""
    return importlib.import_module(MODULES[canonical(name)])


def check_precision(precision: str) -> str:
    """``auto`` or one of fp32/fp16/int8."""
    if precision != "auto" and precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", fix=f"use auto or one of {', '.join(PRECISIONS)}")
    return precision


def open_backend(source: ModelSource, backend: str, precision: str,
                 options: LoadOptions) -> tuple[Backend, list[tuple[str, str]]]:
    """Open ``backend`` (or the best available for ``auto``); also returns the (backend, reason) pairs skipped."""
    precision = check_precision(precision)
    if backend != "auto":
        name = canonical(backend)
        mod = module(name)
        reason = mod.probe()
        if reason:
            raise MissingDependencyError(f"backend {name} is not available here: {reason}", fix=INSTALL[name])
        return mod.open(source, precision, options), []
    skipped: list[tuple[str, str]] = []

    def skip(name: str, reason: str) -> None:
        log.info("backend %s: skipped (%s)", name, reason)
        skipped.append((name, reason))

    for name in BACKENDS:
        mod = module(name)
        reason = mod.probe()
        if reason:
            skip(name, reason)
            continue
        if name == "openvino":
            chosen = _cpu_pair(source, precision, options, skip)
            if chosen is not None:
                return chosen, skipped
            continue
        try:
            return mod.open(source, precision, options), skipped
        except EdgeDLError as exc:
            if name == "onnxruntime":
                raise
            log.warning("backend %s failed, trying the next one: %s", name, exc)
            skip(name, f"failed: {exc.problem}")
    raise AssertionError("unreachable: ONNX Runtime is always available")  # pragma: no cover


def _cpu_pair(source: ModelSource, precision: str, options: LoadOptions, skip: Any) -> Backend | None:
    """OpenVINO or ONNX Runtime, whichever measured faster here; None if OpenVINO failed (ONNX Runtime is next)."""
    from edgedl.runtimes import cpu_choice
    from edgedl.runtimes.onnxruntime import cpu as ort_backend
    from edgedl.runtimes.openvino import backend as ov_backend

    try:
        ov = ov_backend.open(source, precision, options)
    except EdgeDLError as exc:
        skip("openvino", f"failed: {exc.problem}")
        return None
    ort = ort_backend.open(source, precision, options)
    winner, loser, note = cpu_choice.faster(source, ov, ort)
    loser.close()
    skip(loser.name, note)
    return winner
