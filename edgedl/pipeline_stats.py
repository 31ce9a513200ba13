"""A pipeline run's counts and timings, in total and per source, in bounded memory."""

from __future__ import annotations

import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgedl.results import Result, SourceEvent
from edgedl.sources.stream import EVENT_HISTORY


@dataclass
class PipelineStats:
    """Counts and timings of a run so far (all sources together, and each in ``sources``); ``summary()`` gives
    percentiles.

    ``captured`` = ``processed`` + ``dropped`` + ``discarded`` once the run has ended: ``dropped``
    counts the frames a live source dropped because the pipeline fell behind; ``discarded`` those an
    early stop (``stop()``, ``max_frames``) left queued at the source or in flight. A run of any
    length holds a fixed amount of memory: each series keeps its most recent ``window`` samples
    (up to an eighth more between trims) as 8-byte floats, ``events`` the most recent EVENT_HISTORY.
    """

    started: float = field(default_factory=time.monotonic)
    processed: int = 0
    captured: int = 0
    dropped: int = 0
    discarded: int = 0
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    stage_ms: dict[str, array[float]] = field(default_factory=dict)
    events: deque[SourceEvent] = field(default_factory=lambda: deque(maxlen=EVENT_HISTORY))
    max_depth: dict[str, int] = field(default_factory=dict)
    window: int = 100_000  # samples kept per series; a long run keeps its most recent ones
    sources: dict[str, PipelineStats] = field(default_factory=dict)  # per source, when the pipeline has several
    batch_sizes: dict[int, int] = field(default_factory=dict)  # model calls by the number of frames they carried

    def add(self, result: Result) -> None:
        """Count one processed frame and keep its latency and stage times."""
        self.processed += 1
        self._keep(self.latencies_ms, result.latency_ms)
        for stage, ms in result.timings.items():
            self.add_stage(stage, ms)

    def add_batch(self, frames: int) -> None:
        """Count one model call that carried ``frames`` frames."""
        self.batch_sizes[frames] = self.batch_sizes.get(frames, 0) + 1

    def add_stage(self, stage: str, ms: float) -> None:
        """Keep one time (ms) of ``stage``."""
        series = self.stage_ms.get(stage)
        if series is None:
            series = self.stage_ms[stage] = array("d")
        self._keep(series, ms)

    def _keep(self, series: array[float], value: float) -> None:
        series.append(value)
        # Deleting from the front moves the whole series, so trim in batches: once per window/8 samples, not per frame.
        if len(series) > self.window + self.window // 8:
            del series[: len(series) - self.window]

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def fps(self) -> float:
        """Results per second since the pipeline started."""
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def source(self, name: str) -> PipelineStats:
        """The stats of one source (created on first use); this object holds the totals."""
        stats = self.sources.get(name)
        if stats is None:
            stats = self.sources[name] = PipelineStats(started=self.started, window=self.window)
        return stats

    def summary(self) -> dict[str, Any]:
        """Frames, FPS, latency percentiles and mean per-stage times (ms) as plain JSON types; with several
        sources, the same for each under ``sources``."""
        summary = self._summary()
        summary["batch_sizes"] = dict(sorted(self.batch_sizes.items()))
        if len(self.sources) > 1:
            summary["sources"] = {name: stats._summary() for name, stats in self.sources.items()}
        return summary

    def _summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "frames_captured": self.captured, "frames_processed": self.processed, "frames_dropped": self.dropped,
            "frames_discarded": self.discarded,
            "seconds": round(self.elapsed_s, 3), "fps": round(self.fps, 2),
            "latency_ms": {k: round(float(np.percentile(lat, q)), 3) for k, q in (("p50", 50), ("p90", 90), ("p99", 99))}
            | {"max": round(float(lat.max()), 3)},
            "stage_ms": {k: round(float(np.mean(v)), 3) for k, v in self.stage_ms.items() if v},
            "max_queue_depth": dict(self.max_depth),
            "events": [str(e) for e in list(self.events)[-20:]],
        }
