"""Latency statistics: the figures every profile reports, computed one way for every caller."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: The percentiles reported besides the median, as (name, percent).
PERCENTILES: tuple[tuple[str, float], ...] = (("p90", 90.0), ("p95", 95.0), ("p99", 99.0))
#: Names of the statistics, in the order tables show them.
STAT_NAMES: tuple[str, ...] = ("min", "mean", "median", "p90", "p95", "p99", "max", "std")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of a series of milliseconds.

    Percentiles interpolate linearly between the two nearest samples (numpy's default,
    the same as Excel's PERCENTILE.INC); ``std`` is the sample standard deviation
    (n - 1 in the denominator; 0 for a single sample).
    """

    count: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain JSON types."""
        return asdict(self)


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """The statistics of ``samples_ms``; a ValueError for an empty series (there is nothing to report)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    p90, p95, p99 = (float(v) for v in np.percentile(values, [q for _, q in PERCENTILES]))
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return LatencyStats(count=int(values.size), min=float(values.min()), mean=float(values.mean()),
                        median=float(np.median(values)), p90=p90, p95=p95, p99=p99, max=float(values.max()), std=std)


def thin(values: Sequence[float], limit: int) -> list[float]:
    """At most ``limit`` values spread evenly over ``values`` (first and last kept), for reports and plots of long runs."""
    if len(values) <= limit:
        return list(values)
    picks = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in picks]
