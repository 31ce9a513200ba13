"""The streaming pipeline: sources → preprocess → model → postprocess → sinks and the app, concurrently.

    pipeline = edgedl.Pipeline(model, "csi://0", sink="out.mp4", on_result=handle)
    pipeline.start(); ...; pipeline.stop()
    for result in edgedl.Pipeline(model, ["rtsp://cam1/live", "rtsp://cam2/live"], tracker="bytetrack").results():
        print(result.source, result.detections)

Each stage runs in its own thread, joined by small bounded queues, so the model works on
batch ``n`` while batch ``n+1`` is being preprocessed and batch ``n-1`` postprocessed and
written. Nothing queues without bound: a live source drops its oldest frame when the model
falls behind (counted in ``Result.dropped``); a file source waits instead (back-pressure).
With several sources, each keeps its own capture thread, queue policy, reconnection and
events; frames are gathered fairly into batches of up to ``batch_size`` (see
:mod:`edgedl.batching`), run through the model in one call, and their results go out in each
source's frame order. On a GPU backend with GPU preprocessing, preprocessing and inference
share one thread and one CUDA stream, because the device buffer the kernel fills is the one
the engine reads.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from edgedl.batching import SourceMux, split
from edgedl.errors import UsageError
from edgedl.pipeline_stats import PipelineStats
from edgedl.results import Frame, Result, SourceEvent
from edgedl.stream_setup import StreamSetup

log = logging.getLogger("edgedl.pipeline")

_END = object()  # passed down the stages when the sources end
_POLL_S = 0.05  # how often a blocked stage looks at the stop flag
#: Stages timed once per model call: every frame of a batch carries the whole call's time in its timings.
BATCHED_STAGES = frozenset({"preprocess", "infer", "device"})


@dataclass
class _Batch:
    """Frames on their way through the stages: their sources, the model input or outputs, geometries, stage ms."""

    frames: list[Frame]
    names: list[str]
    data: Any
    geometries: list[Any]
    timings: dict[str, float]


class _Stage(threading.Thread):
    """One worker: take an item, apply ``work``, pass the result on; stop on ``_END`` or the stop flag."""

    def __init__(self, name: str, take: Callable[[], Any], work: Callable[[Any], Any], give: Callable[[Any], None],
                 pipeline: Pipeline) -> None:
        super().__init__(name=f"edgedl-{name}", daemon=True)
        self._take, self._work, self._give, self._pipeline = take, work, give, pipeline

    def run(self) -> None:
        try:
            while not self._pipeline.stopping:
                item = self._take()
                if item is None:
                    continue  # nothing yet; look at the stop flag again
                if item is _END:
                    break
                self._give(self._work(item))
        except BaseException as exc:  # noqa: BLE001 - handed to the app's thread, which re-raises it
            self._pipeline.fail(exc)
        finally:
            self._give(_END)


class Pipeline:
    """Run a model over one or more video sources in background threads; hand each :class:`Result` to sinks and the app.

    ``source``: a URI (``csi://0``, ``/dev/video0``, ``rtsp://…``, ``clip.mp4``, an image folder or glob,
    ``gst://…``, ``synthetic://shapes``) or an open :class:`edgedl.sources.FrameStream`; or several, as a
    list (each named by its URI) or a dict of names to sources. ``Result.source`` says which one a result
    came from. ``sink``: a sink URI (``out.mp4``, ``frames/``, ``results.jsonl``, ``display``, ``rtsp://…``)
    or sink object, or a list of them. ``on_result`` is called in the pipeline's output thread for every
    result; without it, iterate :meth:`results`. Options: ``postprocess`` (a registered name or a
    function), ``conf``, ``iou``, ``top_k``, ``max_detections``, ``class_agnostic``, ``keep_outputs``,
    ``preprocess`` (a spec or preset name; needed for a bare ONNX model), ``device_preprocess`` (``auto``,
    ``cpu`` or ``gpu``), ``max_frames`` (per source), ``queue_size``, ``overwrite`` (sink files),
    ``on_event`` (called with each :class:`SourceEvent`), ``source_options`` passed to
    :func:`edgedl.sources.open_source`, ``batch_size`` (the most frames per model call; default: the model's
    fixed batch, else :data:`edgedl.vocabulary.MAX_BATCH`: a dynamic batch runs the frames that are
    ready), ``batch_wait_ms`` (how long a batch waits, once its first frame is in,
    for sources that have given it nothing yet), ``tracker`` (a name in
    :data:`edgedl.tracking.TRACKERS`: detections get a ``track_id`` that stays with their object, per
    source) and ``metrics_port`` (serve Prometheus metrics on ``127.0.0.1:PORT/metrics`` while running; 0
    picks a free port, see :attr:`metrics_url`).
    """

    def __init__(self, model: Any, source: Any, sink: Any = None, on_result: Callable[[Result], Any] | None = None, *,
                 max_frames: int | None = None, queue_size: int = 2, source_options: dict[str, Any] | None = None,
                 on_event: Callable[[SourceEvent], Any] | None = None, overwrite: bool = False,
                 batch_size: int | None = None, batch_wait_ms: float = 5.0, tracker: str | None = None,
                 metrics_port: int | None = None, **options: Any) -> None:
        if queue_size < 1:
            raise UsageError(f"queue_size must be at least 1, got {queue_size}")
        if max_frames is not None and max_frames < 1:
            raise UsageError(f"max_frames must be at least 1, got {max_frames}", fix="leave it out to run until the source ends")
        if not batch_wait_ms >= 0:
            raise UsageError(f"batch_wait_ms must be 0 or more, got {batch_wait_ms}", fix="for example batch_wait_ms=5")
        self.model = model
        self._sources = named_sources(source)
        self._trackers = _trackers(tracker, options)
        self.setup = StreamSetup.for_model(model, **options)
        self.batch_size = self.setup.batch_size(batch_size)
        self._batch_wait_s = batch_wait_ms / 1e3
        self._source_options = dict(source_options or {})
        self._sink_arg, self._overwrite = sink, overwrite
        self.on_result, self.on_event = on_result, on_event
        self.max_frames = max_frames
        self._queues = {name: queue.Queue(maxsize=queue_size) for name in ("preprocessed", "inferred", "results")}
        self.stats = PipelineStats()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._mux = SourceMux(max_frames)
        self._streams: dict[str, Any] = {}  # every source attached, removed ones included, for the final counts
        self._taken: dict[str, Any] = {}  # each source's mux entry: frames taken from it
        self._sinks: list[Any] = []
        self._metrics_port = metrics_port
        self._metrics: Any = None
        self._telemetry: Any = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def stopping(self) -> bool:
        """Whether stop() was called, a stage failed, or the app's sink asked to stop."""
        return self._stop.is_set()

    @property
    def dropped(self) -> int:
        """Frames the sources have dropped so far (live sources drop the oldest when the pipeline falls behind)."""
        return sum(int(stream.dropped) for stream in list(self._streams.values()))

    @property
    def sources(self) -> list[str]:
        """The names of the sources frames are taken from now."""
        return self._mux.names

    @property
    def metrics_url(self) -> str | None:
        """Where the Prometheus metrics are served while the pipeline runs (``metrics_port``), else None."""
        return None if self._metrics is None else self._metrics.url

    def start(self) -> Pipeline:
        """Open the sources and sinks and start the stage threads. Returns self.

        With several sources, one that cannot be opened is reported as an ``unavailable`` event and the
        others run; the error is raised only when none opens.
        """
        if self._started:
            raise UsageError("this pipeline was already started", fix="create a new Pipeline to run again")
        self._started = True
        self.model.share_cpu()  # the stage threads need the cores that idle inference workers would spin on
        self._start_metrics()  # first: a port in use is reported before any camera opens
        opened: dict[str, Any] = {}
        try:
            failures = []
            for name, item in self._sources.items():
                try:
                    opened[name] = self._open(item)
                except Exception as exc:
                    if len(self._sources) == 1:
                        raise
                    failures.append(exc)
                    self._report(name, SourceEvent("unavailable", f"could not be opened: {exc}", time.monotonic(), name))
            if not opened:
                raise failures[0]
            self._sinks = _open_sinks(self._sink_arg, self._overwrite)
        except BaseException:
            for stream in opened.values():
                stream.close()
            self._stop_metrics()
            raise
        for name, stream in opened.items():
            self._attach(name, stream)
        self.stats.started = time.monotonic()
        q = self._queues
        names = ("preprocessed", "inferred", "results")
        take_pre, take_inf, take_out = (lambda name=name: self._get(q[name]) for name in names)
        put_pre, put_inf = (lambda item, name=name: self._put(q[name], item) for name in names[:2])
        if self.setup.fused_preprocess:
            stages = [("infer", self._next_batch, self._preprocess_and_infer, put_inf)]
        else:
            stages = [("preprocess", self._next_batch, self._preprocess, put_pre),
                      ("infer", take_pre, self._infer, put_inf)]
        stages.append(("postprocess", take_inf, self._postprocess, self._put_results))
        self._threads = [_Stage(name, take, work, give, self) for name, take, work, give in stages]
        if self.on_result is not None:
            self._threads.append(_Stage("output", take_out, self._deliver, lambda item: None, self))
        for thread in self._threads:
            thread.start()
        return self

    def add_source(self, source: Any, name: str | None = None) -> str:
        """Start taking frames from another source while the pipeline runs; returns its name.

        A source that cannot be opened raises here and leaves the running sources alone.
        """
        if not self._started:
            raise UsageError("add_source needs a started pipeline", fix="pass every source to Pipeline(...) before start()")
        key = source_name(source) if name is None else str(name)
        if key in self._mux.names:
            raise UsageError(f"source {key!r} is already in this pipeline", fix="give each source once")
        self._attach(key, self._open(source))
        return key

    def remove_source(self, name: str) -> None:
        """Stop taking frames from source ``name`` and close it (frames of it already in flight still come out).

        When the last source is removed the run ends.
        """
        self._mux.remove(name)
        self._streams[name].close()
        self._collect_events()
        if self._trackers is not None:
            self._trackers.remove(name)

    def stop(self) -> None:
        """Stop now: frames in flight are abandoned, the sources and sinks are closed (files finalized).

        On the main thread, one more Ctrl-C or SIGTERM that arrives while stopping is held back until
        the sinks are closed, then delivered (see :class:`_SignalsHeld`).
        """
        self._stop.set()
        with _SignalsHeld():
            self.join()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end (the sources ended, max_frames reached, or stop()); True when it has.

        Closes the sources and the sinks once every stage has finished, and re-raises an error a stage hit.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
            if thread.is_alive():
                return False
        with _SignalsHeld():
            self._close()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return True

    def fail(self, exc: BaseException) -> None:
        """Record a stage's error and stop the others (called from the stage's thread)."""
        if self._error is None:
            self._error = exc
        self._stop.set()

    def _start_metrics(self) -> None:
        if self._metrics_port is None:
            return
        from edgedl.live_metrics import LiveMetrics
        from edgedl.profiling.sampler import live_sampler

        self._telemetry = live_sampler(device=getattr(self.model, "device", 0))  # clocks, temperatures, power
        try:
            self._metrics = LiveMetrics(self._metrics_port, sources=lambda: dict(self._streams),
                                        telemetry=self._telemetry.current)
        except BaseException:
            self._telemetry.stop()
            raise

    def _stop_metrics(self) -> None:
        if self._telemetry is not None:
            self._telemetry.stop()
        if self._metrics is not None:
            self._metrics.close()

    def _open(self, item: Any) -> Any:
        from edgedl.sources import open_source

        return item if hasattr(item, "read") else open_source(item, **self._source_options)

    def _attach(self, name: str, stream: Any) -> None:
        self._taken[name] = self._mux.add(name, stream)
        self._streams[name] = stream

    def _close(self) -> None:
        streams = list(self._streams.items())
        for _, stream in streams:
            stream.close()
        self._collect_events()
        for name, stream in streams:
            stats = self.stats.source(name)
            stats.captured, stats.dropped = int(stream.captured), int(stream.dropped)
            # Frames left at the source by an early stop, plus those taken from it and abandoned in flight.
            stats.discarded = int(stream.discarded) + self._taken[name].taken - stats.processed
        per_source = [self.stats.source(name) for name, _ in streams]
        self.stats.captured = sum(s.captured for s in per_source)
        self.stats.dropped = sum(s.dropped for s in per_source)
        self.stats.discarded = sum(s.discarded for s in per_source)
        self.stats.max_depth["source"] = max((int(getattr(stream, "max_depth", 0)) for _, stream in streams), default=0)
        sinks, self._sinks = self._sinks, []
        try:
            for sink in sinks:
                sink.close()
        finally:
            self._stop_metrics()
            self.setup.close()

    def __enter__(self) -> Pipeline:
        return self if self._started else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def results(self) -> Iterator[Result]:
        """Results in frame order until the run ends (only without ``on_result``). Closing the iterator stops the run."""
        if self.on_result is not None:
            raise UsageError("this pipeline hands results to on_result", fix="create it without on_result to iterate")
        if not self._started:
            self.start()
        try:
            while True:
                item = self._get(self._queues["results"], wait_for_stop=False)
                if item is _END:
                    break
                if item is not None:
                    yield item
        finally:
            self.stop()

    # ------------------------------------------------------------------ queues

    def _get(self, q: queue.Queue, wait_for_stop: bool = True) -> Any:
        """An item, ``None`` after a short wait (so the caller can look at the stop flag), or ``_END``."""
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            return _END if (wait_for_stop and self.stopping) or (not wait_for_stop and self._finished()) else None

    def _finished(self) -> bool:
        return all(not t.is_alive() for t in self._threads) and self._queues["results"].empty()

    def _put(self, q: queue.Queue, item: Any) -> None:
        """Block while the next stage is busy (back-pressure); give up when stopping, but always deliver _END."""
        while True:
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if self.stopping:
                    if item is _END:  # make room: the frames in flight are abandoned anyway
                        with q.mutex:
                            q.queue.clear()
                        continue
                    return

    def _put_results(self, item: Any) -> None:
        for result in [item] if item is _END else item:
            self._put(self._queues["results"], result)

    # ------------------------------------------------------------------ stages

    def _report(self, name: str, event: SourceEvent) -> None:
        if event.source != name:
            event = SourceEvent(event.kind, event.message, event.timestamp, name)
        self.stats.events.append(event)
        self.stats.source(name).events.append(event)
        if self._metrics is not None:
            self._metrics.event(name, event.kind)
        log.info("%s", event)
        if self.on_event is not None:
            self.on_event(event)

    def _collect_events(self) -> None:
        for name, stream in list(self._streams.items()):
            for event in stream.events():
                self._report(name, event)

    def _next_batch(self) -> Any:
        """The next batch of frames; ``_END`` once every source has ended (or given max_frames)."""
        taken = self._mux.gather(self.batch_size, self._batch_wait_s, _POLL_S * 4)
        self._collect_events()
        if not taken:
            return _END if self._mux.ended else None
        return _Batch([frame for _, frame in taken], [name for name, _ in taken], None, [], {})

    def _preprocess(self, batch: _Batch) -> _Batch:
        t0 = time.perf_counter()
        batch.data, batch.geometries = self.setup.preprocess_batch([frame.image for frame in batch.frames])
        batch.timings["preprocess"] = (time.perf_counter() - t0) * 1e3
        return batch

    def _infer(self, batch: _Batch) -> _Batch:
        t0 = time.perf_counter()
        batch.data = self.setup.infer(batch.data)
        seconds = time.perf_counter() - t0
        batch.timings["infer"] = seconds * 1e3
        self.stats.add_batch(len(batch.frames))
        if self._metrics is not None:
            self._metrics.batch(self.model.path.name, len(batch.frames), seconds)
        device_ms = self.model.last_device_ms  # GPU backends: the engine's own time, from CUDA events
        if device_ms is not None:
            batch.timings["device"] = device_ms
        return batch

    def _preprocess_and_infer(self, batch: _Batch) -> _Batch:
        return self._infer(self._preprocess(batch))

    def _postprocess(self, batch: _Batch) -> list[Result]:
        results = []
        for frame, name, outputs, geometry in zip(batch.frames, batch.names, split(batch.data, len(batch.frames)),
                                                  batch.geometries, strict=True):
            t0 = time.perf_counter()
            prediction = self.setup.postprocess(outputs, geometry)
            if self._trackers is not None:  # this one thread sees each source's frames in order, as trackers need
                prediction = self._trackers.update(name, prediction, frame.timestamp)
            timings = {**batch.timings, "postprocess": (time.perf_counter() - t0) * 1e3}
            result = Result(frame, prediction, geometry, timings, (time.monotonic() - frame.timestamp) * 1e3,
                            int(self._streams[name].dropped), name)
            self.stats.add(result)
            self.stats.source(name).add(result)
            self._write(result)
            if self._metrics is not None:
                self._metrics.frame_processed(name, result.latency_ms / 1e3, {k: ms / 1e3 for k, ms in timings.items()})
            results.append(result)
        for queue_name, q in self._queues.items():
            self.stats.max_depth[queue_name] = max(self.stats.max_depth.get(queue_name, 0), q.qsize())
        return results

    def _write(self, result: Result) -> None:
        if not self._sinks:
            return
        t0 = time.perf_counter()
        for sink in self._sinks:
            sink.write(result)
            if getattr(sink, "stop_requested", False):
                self._stop.set()
        ms = (time.perf_counter() - t0) * 1e3
        self.stats.add_stage("sink", ms)
        self.stats.source(result.source).add_stage("sink", ms)

    def _deliver(self, result: Result) -> None:
        assert self.on_result is not None
        self.on_result(result)


def _trackers(name: str | None, options: dict[str, Any]) -> Any:
    """Per-source trackers for ``name`` (None: no tracking); lowers the detector's threshold in ``options`` to the
    one the tracker wants (ByteTrack continues tracks with low-score boxes), reporting the rest as before."""
    if name is None:
        return None
    from edgedl.postprocess.base import PostContext
    from edgedl.tracking import SourceTrackers

    trackers = SourceTrackers(name, conf=options.get("conf", PostContext.conf_threshold))
    options["conf"] = trackers.detector_conf
    return trackers


def source_name(source: Any) -> str:
    """The name a source goes by when none is given: its URI (an open stream's ``uri``)."""
    uri = getattr(source, "uri", None) if hasattr(source, "read") else source
    return str(uri if uri is not None else source)


def named_sources(source: Any) -> dict[str, Any]:
    """One source, a list of them or a dict of names to them → sources by name; duplicates and none are refused."""
    if isinstance(source, Mapping):
        pairs = [(str(name), item) for name, item in source.items()]
    elif isinstance(source, (list, tuple)):
        pairs = [(source_name(item), item) for item in source]
    else:
        pairs = [(source_name(source), source)]
    return by_name(pairs)


def by_name(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """(name, source) pairs as a dict; an empty list, an empty name and a name given twice are refused."""
    if not pairs:
        raise UsageError("no source was given", fix="pass a source URI, or a list of them")
    named: dict[str, Any] = {}
    for name, item in pairs:
        if not name.strip():
            raise UsageError("a source is empty", fix="name a camera, file, folder or URI")
        if name in named:
            raise UsageError(f"source {name!r} is given twice", fix="give each source once")
        named[name] = item
    return named


class _SignalsHeld:
    """Holds Ctrl-C and SIGTERM back on the main thread while a pipeline winds down; delivers them afterwards.

    A video is playable only once its sink has closed, and a Ctrl-C raised inside that (an impatient
    second press while the first one stops the run, or a SIGTERM after it) left it unfinished. A
    signal that comes while one is already held (the user insists) is delivered at once. Elsewhere
    than on the main thread, or inside another hold, this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.held: list[int] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalsHeld:
        if threading.current_thread() is threading.main_thread() and \
                not isinstance(signal.getsignal(signal.SIGINT), _SignalsHeld):
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is not None:  # None: a handler Python did not install, left alone
                    self.previous[signum] = signal.signal(signum, self)
        return self

    def __call__(self, signum: int, frame: Any) -> None:
        if not self.held:
            self.held.append(signum)
            return
        self.held.clear()
        self._restore()
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()

    def __exit__(self, *exc: object) -> None:
        self._restore()
        for signum in self.held:
            signal.raise_signal(signum)


def _open_sinks(sink: Any, overwrite: bool) -> list[Any]:
    """``None``, one sink (URI or object) or a list of them → open sink objects."""
    from edgedl.sinks import open_sink

    items = [] if sink is None else list(sink) if isinstance(sink, (list, tuple)) else [sink]
    opened: list[Any] = []
    try:
        for item in items:
            opened.append(item if hasattr(item, "write") else open_sink(item, overwrite=overwrite))
    except BaseException:
        for done in opened:
            done.close()
        raise
    return opened
