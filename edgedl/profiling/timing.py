"""Timing model calls: warm-up apart from steady state, one model or several measured alternately.

On the CPU a call is timed with ``time.perf_counter`` (monotonic, the finest clock Python has).
On a GPU backend the model's own CUDA-event time (:attr:`edgedl.Model.last_device_ms`) is used:
the backend records the events around its work on its stream and synchronizes before the call
returns, so the time covers finished work (copies included), not a queued launch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: How a timer measured: the host's monotonic clock, or CUDA events recorded by the backend.
CLOCKS: tuple[str, ...] = ("host", "cuda-events")


@dataclass
class Measurement:
    """One phase of one model: each call's milliseconds, when it started (``time.monotonic()``), and the
    wall time its calls took (summed per call, so models measured alternately each get their own share)."""

    samples_ms: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    ended: float = 0.0

    def add(self, started: float, ended: float, ms: float) -> None:
        self.starts.append(started)
        self.samples_ms.append(ms)
        self.wall_s += ended - started
        self.ended = ended

    @property
    def calls_per_s(self) -> float:
        """Calls completed per second of wall time spent in them."""
        return len(self.samples_ms) / self.wall_s if self.wall_s > 0 else 0.0


class ModelTimer:
    """Calls a model on fixed inputs and returns the call's milliseconds.

    ``clock`` (one of :data:`CLOCKS`) says how: ``cuda-events`` once the backend has reported a
    CUDA-event time for a call, else ``host``.
    """

    def __init__(self, model: Any, feeds: dict[str, Any]) -> None:
        self.model = model
        self.feeds = feeds
        self.clock = "host"

    def __call__(self) -> float:
        t0 = time.perf_counter()
        self.model(self.feeds)
        host_ms = (time.perf_counter() - t0) * 1e3
        device_ms = self.model.last_device_ms
        if device_ms is None:
            return host_ms
        self.clock = "cuda-events"
        return float(device_ms)


@dataclass
class Phases:
    """A model's warm-up and steady-state measurements."""

    warmup: Measurement
    steady: Measurement


def measure(timers: Sequence[Callable[[], float]], warmup: int, runs: int | None = None,
            duration_s: float | None = None) -> list[Phases]:
    """Time every timer round-robin: each round calls each timer once, in order.

    ``warmup`` rounds come first and are kept apart; then rounds run until ``runs`` rounds are
    done or ``duration_s`` has passed (the round under way finishes, so every timer has the same
    number of samples). Alternating means a clock or temperature drift during the run touches
    every model alike, so their ratios hold even when the absolute times move.
    """
    if (runs is None) == (duration_s is None):
        raise ValueError("give runs or duration_s, not both")
    phases = [Phases(Measurement(), Measurement()) for _ in timers]
    _rounds(timers, [p.warmup for p in phases], rounds=warmup, duration_s=None)
    _rounds(timers, [p.steady for p in phases], rounds=runs, duration_s=duration_s)
    return phases


def _rounds(timers: Sequence[Callable[[], float]], into: list[Measurement], rounds: int | None,
            duration_s: float | None) -> None:
    began = time.monotonic()
    done = 0
    while (rounds is not None and done < rounds) or (duration_s is not None and time.monotonic() - began < duration_s):
        for timer, measurement in zip(timers, into, strict=True):
            started = time.monotonic()
            ms = timer()
            measurement.add(started, time.monotonic(), ms)
        done += 1
