"""Live metrics of a running pipeline for Prometheus (``edgedl run … --metrics-port N``).

    from edgedl.profiling.sampler import live_sampler

    sampler = live_sampler()                          # the device telemetry ``edgedl profile`` reads
    metrics = LiveMetrics(9100, sources=lambda: streams, telemetry=sampler.current)
    metrics.frame_processed("cam0", 0.031, {"preprocess": 0.004, "infer": 0.020, "postprocess": 0.002})
    metrics.batch("yolo", 4, 0.020)
    metrics.event("cam0", "reconnected")
    ...
    metrics.close(); sampler.stop()

:mod:`~edgedl.live_metrics.exporter` serves the registry and takes the pushes;
:mod:`~edgedl.live_metrics.collectors` reads source counters and telemetry at each scrape.
Imports ``prometheus_client``, so import this package only when metrics are asked for.
"""

from __future__ import annotations

from edgedl.live_metrics.collectors import SourceCounts
from edgedl.live_metrics.exporter import BATCH_BUCKETS, LATENCY_BUCKETS, LiveMetrics

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "LiveMetrics", "SourceCounts"]
