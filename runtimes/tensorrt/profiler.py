"""TensorRT per-layer times through an ``IProfiler`` on the engine's execution context.

TensorRT calls ``report_layer_time(layer_name, ms)`` for every layer after each execution
while a profiler is attached (it synchronizes per layer to measure, so these runs are slower
than the latency runs and are made apart from them). Layer names are TensorRT's, after fusion
(``conv1 + relu1``); the op type is not reported. The model must expose ``set_profiler`` (the
TensorRT backend's hook that sets ``IExecutionContext.profiler``).

Only tested against a stand-in ``IProfiler`` base: the fake TensorRT the tests use has none.
"""

from __future__ import annotations

from typing import Any

from edgedl.profiling.layers import LayerProfile, aggregate


def make_profiler(trt: Any) -> Any:
    """An ``IProfiler`` of the ``trt`` module that records every ``(layer, ms)`` report."""

    class LayerRecorder(trt.IProfiler):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)  # pybind11 trampolines need the base initialised explicitly
            self.events: list[tuple[str, str, float]] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.events.append((str(layer_name), "", float(ms)))

    return LayerRecorder()


def tensorrt_layers(model: Any, feeds: dict[str, Any], runs: int, trt: Any = None) -> LayerProfile:
    """Attach a recording profiler, run ``runs`` inferences (after one uncounted run), detach it.

    ``model`` must have the ``set_profiler`` hook (``layers.check_supported`` says so up front).
    """
    if trt is None:
        from edgedl.runtimes.tensorrt.backend import import_tensorrt

        trt = import_tensorrt()
    model(feeds)
    recorder = make_profiler(trt)
    model.set_profiler(recorder)
    try:
        for _ in range(runs):
            model(feeds)
    finally:
        model.set_profiler(None)
    return aggregate("tensorrt-iprofiler", runs, recorder.events)
