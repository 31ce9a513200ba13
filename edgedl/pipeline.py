"""The streaming pipeline: source → preprocess → model → postprocess → sinks and the app, concurrently.

    pipeline = edgedl.Pipeline(model, "csi://0", sink="out.mp4", on_result=handle)
    pipeline.start(); ...; pipeline.stop()

Each stage runs in its own thread, joined by small bounded queues, so the model works on
frame ``n`` while frame ``n+1`` is being preprocessed and frame ``n-1`` postprocessed and
written. Nothing queues without bound: a live source drops its oldest frame when the model
falls behind (counted in ``Result.dropped``); a file source waits instead (back-pressure).
On a GPU backend with GPU preprocessing, preprocessing and inference share one thread and
one CUDA stream, because the device buffer the kernel fills is the one the engine reads.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgedl.errors import UsageError
from edgedl.results import Frame, Result, SourceEvent
from edgedl.sources.stream import EVENT_HISTORY
from edgedl.stream_setup import StreamSetup

log = logging.getLogger("edgedl.pipeline")

_END = object()  # passed down the stages when the source ends
_POLL_S = 0.05  # how often a blocked stage looks at the stop flag
_Item = tuple[Frame, Any, Any, dict[str, float]]  # frame, tensor or outputs, geometry, stage timings (ms)


@dataclass
class PipelineStats:
    """Counts and timings of a run so far; ``summary()`` gives percentiles.

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

    def add(self, result: Result) -> None:
        """Count one processed frame and keep its latency and stage times."""
        self.processed += 1
        self._keep(self.latencies_ms, result.latency_ms)
        for stage, ms in result.timings.items():
            self.add_stage(stage, ms)

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

    def summary(self) -> dict[str, Any]:
        """Frames, FPS, latency percentiles and mean per-stage times (ms) as plain JSON types."""
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
    """Run a model over a video source in background threads; hand each :class:`Result` to sinks and the app.

    ``source``: a URI (``csi://0``, ``/dev/video0``, ``rtsp://…``, ``clip.mp4``, an image folder or glob,
    ``gst://…``, ``synthetic://shapes``) or an open :class:`edgedl.sources.FrameStream`. ``sink``: a sink URI
    (``out.mp4``, ``frames/``, ``results.jsonl``, ``display``, ``rtsp://…``) or sink object, or a list of them.
    ``on_result`` is called in the pipeline's output thread for every result; without it, iterate
    :meth:`results`. Options: ``postprocess`` (a registered name or a function), ``conf``, ``iou``, ``top_k``,
    ``max_detections``, ``class_agnostic``, ``keep_outputs``, ``preprocess`` (a spec or preset name; needed for
    a bare ONNX model), ``device_preprocess`` (``auto``, ``cpu`` or ``gpu``), ``max_frames``, ``queue_size``,
    ``overwrite`` (sink files), ``on_event`` (called with each :class:`SourceEvent`) and ``source_options``
    passed to :func:`edgedl.sources.open_source`.
    """

    def __init__(self, model: Any, source: Any, sink: Any = None, on_result: Callable[[Result], Any] | None = None, *,
                 max_frames: int | None = None, queue_size: int = 2, source_options: dict[str, Any] | None = None,
                 on_event: Callable[[SourceEvent], Any] | None = None, overwrite: bool = False, **options: Any) -> None:
        if queue_size < 1:
            raise UsageError(f"queue_size must be at least 1, got {queue_size}")
        if max_frames is not None and max_frames < 1:
            raise UsageError(f"max_frames must be at least 1, got {max_frames}", fix="leave it out to run until the source ends")
        self.model = model
        self.setup = StreamSetup.for_model(model, **options)
        self._source_arg, self._source_options = source, dict(source_options or {})
        self._sink_arg, self._overwrite = sink, overwrite
        self.on_result, self.on_event = on_result, on_event
        self.max_frames = max_frames
        self._queues = {name: queue.Queue(maxsize=queue_size) for name in ("preprocessed", "inferred", "results")}
        self.stats = PipelineStats()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._stream: Any = None
        self._sinks: list[Any] = []
        self._read = 0
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def stopping(self) -> bool:
        """Whether stop() was called, a stage failed, or the app's sink asked to stop."""
        return self._stop.is_set()

    @property
    def dropped(self) -> int:
        """Frames the source has dropped so far (live sources drop the oldest when the pipeline falls behind)."""
        return int(self._stream.dropped) if self._stream is not None else 0

    def start(self) -> Pipeline:
        """Open the source and sinks and start the stage threads. Returns self."""
        if self._started:
            raise UsageError("this pipeline was already started", fix="create a new Pipeline to run again")
        from edgedl.sources import open_source

        self._started = True
        self._stream = self._source_arg if hasattr(self._source_arg, "read") else \
            open_source(self._source_arg, **self._source_options)
        try:
            self._sinks = _open_sinks(self._sink_arg, self._overwrite)
        except BaseException:
            self._stream.close()
            raise
        self.stats.started = time.monotonic()
        q = self._queues
        names = ("preprocessed", "inferred", "results")
        take_pre, take_inf, take_out = (lambda name=name: self._get(q[name]) for name in names)
        put_pre, put_inf, put_res = (lambda item, name=name: self._put(q[name], item) for name in names)
        if self.setup.fused_preprocess:
            stages = [("infer", self._next_frame, self._preprocess_and_infer, put_inf)]
        else:
            stages = [("preprocess", self._next_frame, self._preprocess, put_pre),
                      ("infer", take_pre, self._infer, put_inf)]
        stages.append(("postprocess", take_inf, self._postprocess, put_res))
        self._threads = [_Stage(name, take, work, give, self) for name, take, work, give in stages]
        if self.on_result is not None:
            self._threads.append(_Stage("output", take_out, self._deliver, lambda item: None, self))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop now: frames in flight are abandoned, the source and sinks are closed (files finalized).

        On the main thread, one more Ctrl-C or SIGTERM that arrives while stopping is held back until
        the sinks are closed, then delivered (see :class:`_SignalsHeld`).
        """
        self._stop.set()
        with _SignalsHeld():
            self.join()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end (the source ended, max_frames reached, or stop()); True when it has.

        Closes the source and the sinks once every stage has finished, and re-raises an error a stage hit.
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

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._collect_events()
            self.stats.captured = int(self._stream.captured)
            self.stats.dropped = int(self._stream.dropped)
            # Frames left at the source by an early stop, plus those taken from it and abandoned in flight.
            self.stats.discarded = int(self._stream.discarded) + self._read - self.stats.processed
            self.stats.max_depth["source"] = int(getattr(self._stream, "max_depth", 0))
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            sink.close()
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

    # ------------------------------------------------------------------ stages

    def _collect_events(self) -> None:
        for event in self._stream.events():
            self.stats.events.append(event)
            log.info("%s", event)
            if self.on_event is not None:
                self.on_event(event)

    def _next_frame(self) -> Any:
        """The source's next frame; ``_END`` at its end or after max_frames."""
        if self.max_frames is not None and self._read >= self.max_frames:
            return _END
        frame = self._stream.read(timeout=_POLL_S * 4)
        self._collect_events()
        if frame is None:
            return None if self._stream_open() else _END
        self._read += 1
        return frame

    def _stream_open(self) -> bool:
        return not getattr(self._stream, "ended", False)

    def _preprocess(self, frame: Frame) -> _Item:
        t0 = time.perf_counter()
        tensor, geometry = self.setup.preprocess(frame.image)
        return frame, tensor, geometry, {"preprocess": (time.perf_counter() - t0) * 1e3}

    def _infer(self, item: _Item) -> _Item:
        frame, tensor, geometry, timings = item
        t0 = time.perf_counter()
        outputs = self.setup.infer(tensor)
        timings["infer"] = (time.perf_counter() - t0) * 1e3
        device_ms = self.model.last_device_ms  # GPU backends: the engine's own time, from CUDA events
        if device_ms is not None:
            timings["device"] = device_ms
        return frame, outputs, geometry, timings

    def _preprocess_and_infer(self, frame: Frame) -> _Item:
        return self._infer(self._preprocess(frame))

    def _postprocess(self, item: _Item) -> Result:
        frame, outputs, geometry, timings = item
        t0 = time.perf_counter()
        prediction = self.setup.postprocess(outputs, geometry)
        timings["postprocess"] = (time.perf_counter() - t0) * 1e3
        result = Result(frame, prediction, geometry, timings, (time.monotonic() - frame.timestamp) * 1e3,
                        int(self._stream.dropped))
        self.stats.add(result)
        if self._sinks:
            t0 = time.perf_counter()
            for sink in self._sinks:
                sink.write(result)
                if getattr(sink, "stop_requested", False):
                    self._stop.set()
            self.stats.add_stage("sink", (time.perf_counter() - t0) * 1e3)
        for name, q in self._queues.items():
            self.stats.max_depth[name] = max(self.stats.max_depth.get(name, 0), q.qsize())
        return result

    def _deliver(self, result: Result) -> None:
        assert self.on_result is not None
        self.on_result(result)



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
