"""LiveMetrics: a running pipeline's metrics, served as Prometheus text on ``http://127.0.0.1:PORT/metrics``.

The pipeline's threads push what happens to each frame, batch and source (:meth:`LiveMetrics.frame_processed`,
:meth:`~LiveMetrics.batch`, :meth:`~LiveMetrics.event`); counters the source streams keep and the device's
telemetry are read when Prometheus scrapes (:mod:`edgedl.live_metrics.collectors`). Each instance has its
own registry, so two pipelines in one process never share or clash over a metric.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from edgedl.errors import UsageError
from edgedl.live_metrics.collectors import (
    FPS_WINDOW_S,
    RateMeter,
    SourcesCallable,
    SourcesCollector,
    TelemetryCallable,
    TelemetryCollector,
)

#: Histogram buckets in seconds for edge latencies: 1 ms to 1 s in 1-2-5 steps (slower lands in +Inf).
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
#: Histogram buckets for frames per inference call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class LiveMetrics:
    """Serves Prometheus metrics on ``host:port`` from the moment it is made until :meth:`close`.

    ``port`` 0 picks a free port (see :attr:`port` and :attr:`url`). A port that is taken or not
    permitted raises :class:`~edgedl.errors.UsageError` with the fix. ``sources`` and ``telemetry``
    are called at each scrape: ``sources()`` maps each source's name to its counters (anything with
    ``captured``, ``dropped`` and ``discarded``, such as a :class:`~edgedl.sources.FrameStream`);
    ``telemetry()`` gives the device's latest :class:`~edgedl.profiling.telemetry.TelemetrySample`
    or None (:func:`edgedl.profiling.sampler.live_sampler` makes one from what ``edgedl profile`` reads).
    LiveMetrics calls them but does not own them: whoever started a sampler stops it.

    The push methods are thread-safe and take microseconds; call them from any pipeline thread.
    Metrics (histograms also give ``_bucket``, ``_sum`` and ``_count``)::

        edgedl_frames_processed_total{source}      edgedl_frame_latency_seconds{source}
        edgedl_stage_latency_seconds{source,stage} edgedl_source_events_total{source,kind}
        edgedl_fps{source}                         edgedl_batch_size{model}   edgedl_inference_seconds{model}
        edgedl_frames_{captured,dropped,discarded}_total{source}   (with ``sources``)
        edgedl_{gpu,emc,cpu}_clock_hertz, edgedl_{gpu,emc,cpu}_load_ratio, edgedl_temperature_celsius{sensor},
        edgedl_power_watts{rail}, edgedl_power_input_watts, edgedl_ram_used_bytes   (with ``telemetry``)
    """

    def __init__(self, port: int, host: str = "127.0.0.1", *, sources: SourcesCallable | None = None,
                 telemetry: TelemetryCallable | None = None) -> None:
        _check_port(port)
        self.host = host
        self.registry = CollectorRegistry()
        self._started = time.monotonic()
        self._rates: dict[str, RateMeter] = {}
        self._rates_lock = threading.Lock()
        registry = self.registry
        self._processed = Counter("edgedl_frames_processed", "Frames the pipeline has processed.", ["source"],
                                  registry=registry)
        self._latency = Histogram("edgedl_frame_latency_seconds", "Per frame, from capture to its result.", ["source"],
                                  buckets=LATENCY_BUCKETS, registry=registry)
        self._stages = Histogram("edgedl_stage_latency_seconds", "Per frame, the time of each pipeline stage.",
                                 ["source", "stage"], buckets=LATENCY_BUCKETS, registry=registry)
        self._events = Counter("edgedl_source_events", "Source events by kind (opened, stalled, disconnected, reconnected…).",
                               ["source", "kind"], registry=registry)
        self._fps = Gauge("edgedl_fps", f"Frames processed per second over the last {FPS_WINDOW_S:g} s.", ["source"],
                          registry=registry)
        self._batch_size = Histogram("edgedl_batch_size", "Frames per inference call.", ["model"], buckets=BATCH_BUCKETS,
                                     registry=registry)
        self._inference = Histogram("edgedl_inference_seconds", "Per inference call, the time the model took.", ["model"],
                                    buckets=LATENCY_BUCKETS, registry=registry)
        if sources is not None:
            registry.register(SourcesCollector(sources))
        if telemetry is not None:
            registry.register(TelemetryCollector(telemetry))
        self._server: WSGIServer | None
        self._server, self._thread = _serve(port, host, registry)
        self.port: int = self._server.server_port

    @property
    def url(self) -> str:
        """Where the metrics are served: ``http://HOST:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    # ------------------------------------------------------------------ pushed by the pipeline

    def frame_processed(self, source: str, latency_s: float, stage_s: Mapping[str, float]) -> None:
        """One frame of ``source`` done: ``latency_s`` from capture to result, ``stage_s`` seconds per stage name."""
        self._processed.labels(source).inc()
        self._latency.labels(source).observe(latency_s)
        for stage, seconds in stage_s.items():
            self._stages.labels(source, stage).observe(seconds)
        self._rate(source).add(time.monotonic())

    def batch(self, model: str, size: int, seconds: float) -> None:
        """One inference call of ``model`` on ``size`` frames that took ``seconds``."""
        self._batch_size.labels(model).observe(size)
        self._inference.labels(model).observe(seconds)

    def event(self, source: str, kind: str) -> None:
        """Count one event of ``source`` (a :class:`~edgedl.results.SourceEvent` kind, such as ``reconnected``)."""
        self._events.labels(source, kind).inc()

    def _rate(self, source: str) -> RateMeter:
        meter = self._rates.get(source)
        if meter is None:
            with self._rates_lock:  # two threads may see a new source at once: one meter, one gauge
                meter = self._rates.get(source)
                if meter is None:
                    meter = self._rates[source] = RateMeter(self._started)
                    self._fps.labels(source).set_function(meter.rate)
        return meter

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop serving and free the port (within half a second, the server's poll interval). Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join()

    def __enter__(self) -> LiveMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveMetrics({self.url!r}{'' if self._server else ', closed'})"


def _check_port(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"metrics port must be a whole number from 0 to 65535, got {port!r}",
                         fix="use e.g. --metrics-port 9100, or 0 for any free port")


def _serve(port: int, host: str, registry: CollectorRegistry) -> tuple[WSGIServer, threading.Thread]:
    """prometheus-client's server in a daemon thread, its bind failures told as the user's to fix."""
    try:
        return start_http_server(port, host, registry)
    except socket.gaierror as exc:
        raise UsageError(f"cannot serve metrics on {host!r}: {exc.strerror}",
                         fix="use 127.0.0.1, or an address of this machine") from exc
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"metrics port {port} is in use", fix="pick another --metrics-port or stop what listens there") \
                from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UsageError(f"metrics port {port} is not permitted for this user (ports below 1024 need root)",
                             fix="pick a --metrics-port from 1024 up, e.g. 9100") from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"cannot serve metrics on {host}: not an address of this machine",
                             fix="use 127.0.0.1, or an address of this machine") from exc
        raise
