"""Per-layer times: what each runtime's profiler reports, brought to one shape (name, op, ms per inference, share).

Each runtime is profiled in its own way, by its backend (``edgedl.runtimes.onnxruntime.layers``,
``openvino.layers``, ``tensorrt.profiler``); profiling slows a runtime down, so layer times come from runs of their
own, after the latency runs, and their sum can exceed the latency measured without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgedl.errors import UsageError


@dataclass(frozen=True)
class LayerTime:
    """One layer (node, fused kernel): mean milliseconds per inference and its share of all layers' time."""

    name: str
    op: str
    ms: float
    share: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "ms": self.ms, "share": self.share}


@dataclass
class LayerProfile:
    """Every layer's time, slowest first, and where the numbers came from."""

    profiler: str
    runs: int
    layers: list[LayerTime] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        """Sum of the layers' mean times: the profiled time per inference."""
        return sum(layer.ms for layer in self.layers)

    def top(self, count: int) -> list[LayerTime]:
        """The ``count`` slowest layers."""
        return self.layers[:count]

    def as_dict(self, top: int | None = None) -> dict[str, Any]:
        """JSON form; ``top`` keeps the slowest layers only (shares stay relative to all layers)."""
        kept = self.layers if top is None else self.top(top)
        return {"profiler": self.profiler, "runs": self.runs, "total_ms": self.total_ms, "layer_count": len(self.layers),
                "layers": [layer.as_dict() for layer in kept]}


def aggregate(profiler: str, runs: int, events: Iterable[tuple[str, str, float]]) -> LayerProfile:
    """Sum ``(name, op, ms)`` events per layer over ``runs`` inferences; mean per inference, slowest first."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    totals: dict[str, float] = {}
    ops: dict[str, str] = {}
    for name, op, ms in events:
        totals[name] = totals.get(name, 0.0) + ms
        ops.setdefault(name, op)
    overall = sum(totals.values())
    layers = [LayerTime(name, ops[name], total / runs, total / overall if overall > 0 else 0.0)
              for name, total in totals.items()]
    layers.sort(key=lambda layer: (-layer.ms, layer.name))
    return LayerProfile(profiler, runs, layers)


def check_supported(model: Any) -> None:
    """A UsageError, before anything is measured, when the model's backend has no per-layer profiler here."""
    if model.capabilities.layer_profiler is None:
        raise UsageError(f"--per-layer has no profiler for backend {model.backend}",
                         fix="profile layers with --backend onnxruntime, openvino or tensorrt")


def profile_layers(model: Any, feeds: dict[str, Any], runs: int) -> LayerProfile:
    """Per-layer times of a loaded model on ``feeds`` over ``runs`` inferences, with its runtime's profiler."""
    check_supported(model)
    return model.profile_layers(feeds, runs)
