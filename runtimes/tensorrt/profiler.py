"""TensorRT per-layer times through an ``IProfiler`` on the engine's execution context.

TensorRT calls ``report_layer_time(layer_name, ms)`` for every layer after each execution
while a profiler is attached (it synchronizes per layer to measure, so these runs are slower
than the latency runs and are made apart from them). Layer names are TensorRT's, after fusion
(``conv1 + relu1``); the op type is not reported. TensorRT 8.5 and later report for
``execute_async_v3``; earlier releases only for synchronous execution, which the backend
switches to while a profiler is attached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgedl.profiling.layers import LayerProfile, aggregate

PROFILER = "tensorrt-iprofiler"


def make_profiler(trt: Any) -> Any:
    """An ``IProfiler`` of the ``trt`` module that records every ``(layer, ms)`` report."""

    class LayerRecorder(trt.IProfiler):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.events: list[tuple[str, str, float]] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.events.append((str(layer_name), "", float(ms)))

    return LayerRecorder()


def tensorrt_layers(trt: Any, run: Callable[[], Any], attach: Callable[[Any], None], runs: int) -> LayerProfile:
    """One uncounted ``run()``, then ``runs`` more with a recording profiler attached; detached afterwards.

    ``attach(profiler)`` sets the execution context's profiler (``attach(None)`` removes it).
    """
    run()
    recorder = make_profiler(trt)
    attach(recorder)
    try:
        for _ in range(runs):
            run()
    finally:
        attach(None)
    return aggregate(PROFILER, runs, recorder.events)
