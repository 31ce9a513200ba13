"""OpenVINO per-layer times from its performance counters (``get_profiling_info``).

The model file is compiled again with profiling on (``ov.properties.enable_profiling``) and the
settings the loaded runtime reports (threads, inference precision) under the same latency hint,
so the runtime's own compiled model is untouched. Counters describe the last inference only, so
they are read after each run and summed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgedl.profiling.layers import LayerProfile, aggregate

#: OpenVINO element types as ``str(ov.Type)`` prints them (what the backend's describe() reports) → property values.
_PRECISIONS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def precision_hint(described: str | None) -> str | None:
    """``<Type: 'float32'>`` → ``f32``; None when it names no precision the CPU plugin takes."""
    found = re.search(r"'(\w+)'", described or "")
    return _PRECISIONS.get(found[1]) if found else None


def openvino_layers(model_file: Path, feeds: dict[str, Any], runs: int, threads: int | None = None,
                    inference_precision: str | None = None) -> LayerProfile:
    """Profile ``runs`` inferences (after one uncounted run) of ``model_file`` on OpenVINO's CPU plugin.

    ``threads`` and ``inference_precision`` are what the loaded backend describes (``<Type: 'float32'>``).
    """
    import openvino as ov

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", ov.properties.enable_profiling(): True}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    hint = precision_hint(inference_precision)
    if hint:
        config["INFERENCE_PRECISION_HINT"] = hint
    request = ov.Core().compile_model(str(model_file), "CPU", config).create_infer_request()
    request.infer(feeds)
    counters = []
    for _ in range(runs):
        request.infer(feeds)
        counters.extend(request.get_profiling_info())
    return aggregate("openvino-perf-counters", runs, executed(counters))


def executed(counters: list[Any]) -> Iterator[tuple[str, str, float]]:
    """``(name, op, ms)`` of the counters whose layer ran (skipped and fused-away layers report zero)."""
    for info in counters:
        if info.status.name == "EXECUTED":
            yield info.node_name, info.node_type, info.real_time.total_seconds() * 1e3
