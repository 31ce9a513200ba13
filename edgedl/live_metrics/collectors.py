"""Live metrics read when Prometheus scrapes, not pushed: source counters, the current frame rate, device telemetry.

Counters that the source streams already keep (captured, dropped, discarded) and the device's
latest telemetry reading are read through a callable at each scrape, so nothing has to copy them
on every frame; the frame rate is kept here from the pushes of processed frames.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from edgedl.profiling.telemetry import TelemetrySample

#: Seconds of processed frames the frame rate is measured over.
FPS_WINDOW_S = 5.0


class SourceCounts(Protocol):
    """A source's frame counters, as :class:`edgedl.sources.FrameStream` keeps them (a stream itself will do)."""

    @property
    def captured(self) -> int:
        """Frames read from the device, dropped ones included."""

    @property
    def dropped(self) -> int:
        """Frames dropped because the pipeline fell behind."""

    @property
    def discarded(self) -> int:
        """Frames captured but never processed because the run stopped early."""


SourcesCallable = Callable[[], Mapping[str, SourceCounts]]
TelemetryCallable = Callable[[], "TelemetrySample | None"]


class SourcesCollector(Collector):
    """``edgedl_frames_{captured,dropped,discarded}_total{source}`` from the counters ``sources()`` gives at each scrape."""

    def __init__(self, sources: SourcesCallable) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        families = {name: CounterMetricFamily(f"edgedl_frames_{name}", doc, labels=["source"]) for name, doc in (
            ("captured", "Frames read from the source, dropped ones included."),
            ("dropped", "Frames the source dropped because the pipeline fell behind."),
            ("discarded", "Frames captured but never processed because the run stopped early."))}
        for source, counts in self._sources().items():
            for name, family in families.items():
                family.add_metric([source], getattr(counts, name))
        return families.values()


class TelemetryCollector(Collector):
    """Gauges of the device's latest telemetry reading (clocks, loads, temperatures, power, memory); none without one."""

    def __init__(self, telemetry: TelemetryCallable) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterable[Metric]:
        sample = self._telemetry()
        if sample is None:
            return []
        return [family for family in (
            _gauge("edgedl_gpu_clock_hertz", "GPU clock.", sample.gpu_mhz, 1e6),
            _gauge("edgedl_emc_clock_hertz", "Memory controller (EMC) clock, or a discrete GPU's memory clock.",
                   sample.emc_mhz, 1e6),
            _gauges("edgedl_cpu_clock_hertz", "CPU clock per online core.", "core", _cores(sample.cpu_mhz), 1e6),
            _gauge("edgedl_gpu_load_ratio", "GPU load, 0 to 1.", sample.gpu_load, 1e-2),
            _gauge("edgedl_emc_load_ratio", "Memory controller (EMC) load, 0 to 1.", sample.emc_load, 1e-2),
            _gauges("edgedl_cpu_load_ratio", "CPU load per online core, 0 to 1.", "core", _cores(sample.cpu_load), 1e-2),
            _gauges("edgedl_temperature_celsius", "Temperature per sensor.", "sensor", sample.temps_c, 1.0),
            _gauges("edgedl_power_watts", "Power per rail.", "rail", sample.power_mw, 1e-3),
            _gauge("edgedl_power_input_watts", "The board's input power (the sum of the rails where it has no input rail).",
                   sample.total_mw, 1e-3),
            _gauge("edgedl_ram_used_bytes", "Memory in use.", sample.ram_used_mb, 2.0**20),
        ) if family is not None]


def _cores(values: list[float | None]) -> dict[str, float]:
    """Per-core readings keyed by core number, cores that are off left out."""
    return {str(core): value for core, value in enumerate(values) if value is not None}


def _gauge(name: str, doc: str, value: float | None, scale: float) -> GaugeMetricFamily | None:
    """One gauge scaled to base units; None without a reading."""
    return None if value is None else GaugeMetricFamily(name, doc, value=value * scale)


def _gauges(name: str, doc: str, label: str, values: Mapping[str, float], scale: float) -> GaugeMetricFamily | None:
    """One gauge per key of ``values``, scaled to base units; None without a reading."""
    if not values:
        return None
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value * scale)
    return family


class RateMeter:
    """Events per second over the last ``window_s`` seconds (over the time since ``started`` until that is longer).

    Thread-safe: :meth:`add` is called from the pipeline's threads, :meth:`rate` from the scrape.
    Memory grows with the rate times the window, a few thousand floats at most on an edge device.
    """

    def __init__(self, started: float, window_s: float = FPS_WINDOW_S) -> None:
        self.started, self.window_s = started, window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def add(self, now: float) -> None:
        """Count one event at ``now`` (``time.monotonic()``)."""
        with self._lock:
            self._times.append(now)
            self._forget(now)

    def rate(self, now: float | None = None) -> float:
        """Events per second up to ``now`` (default: ``time.monotonic()``)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget(now)
            span = min(self.window_s, now - self.started)
            return len(self._times) / span if span > 0 else 0.0

    def _forget(self, now: float) -> None:
        times, oldest = self._times, now - self.window_s
        while times and times[0] <= oldest:
            times.popleft()
