"""FrameStream: frames from any :class:`FrameReader`, captured in the background, with deadlines and reconnection.

Two threads serve a stream. A *read worker* does nothing but call ``reader.read()`` and hand
each result over, because OpenCV's ``read()`` can block forever and a blocked call cannot be
interrupted. The *capture thread* waits for the worker's frames with a deadline and does
everything else: stale-frame and size checks, numbering and timestamps, the bounded queue, and
reconnection. When the deadline passes it abandons the stuck worker (a daemon thread, which
closes its reader if the call ever returns) and, for a reconnectable source, opens a fresh
reader with a new worker. A device whose reads keep blocking would otherwise leave one stuck
thread (and one open device handle) behind per attempt, for as long as the stream runs: while
MAX_STUCK_READS abandoned reads have not returned, reconnection attempts fail without opening
anything. Everything that happens is reported as a :class:`~edgedl.results.SourceEvent`.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from edgedl.errors import UsageError
from edgedl.results import Frame, SourceEvent
from edgedl.sources.frame_queue import POLICIES, FrameQueue
from edgedl.sources.reader import Capture, FrameReader, ReaderFactory
from edgedl.sources.stale import StaleCheck

log = logging.getLogger("edgedl.sources")

POLL_S = 0.05  # how often a waiting thread looks at the stop flag
JOIN_S = 2.0  # how long a stopping thread waits for the one below it
EVENT_HISTORY = 256  # events kept for events(); an app that never drains them loses the oldest
BACKOFF_S = (0.5, 8.0)  # first reconnection delay and its cap; the delay doubles on each failed attempt
MAX_STUCK_READS = 3  # abandoned reads still blocked in the device before reconnection stops opening new readers


class _Outcome(enum.Enum):
    """Why a run of frames from one reader stopped."""

    END = "end"  # the reader has no more frames
    FAILED = "failed"  # stalled, stale or disconnected (already reported)
    LIMIT = "limit"  # max_frames reached
    CLOSED = "closed"  # close() was called


class _ReadWorker:
    """Calls ``reader.read()`` in its own daemon thread and hands each result over, one at a time."""

    def __init__(self, reader: FrameReader) -> None:
        self.reader = reader
        self.delivered = 0
        self.stuck = False  # its read() passed the deadline: the thread is abandoned, not waited for
        self._slot: queue.Queue[tuple[str, Any, float]] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgedl-source-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    capture = self.reader.read()
                except Exception as exc:  # noqa: BLE001 - a failing device is reported, and reconnected where it can be
                    self._give(("error", exc, time.monotonic()))
                    return
                if capture is None:
                    self._give(("none", None, time.monotonic()))
                    return
                if not self._give(("frame", capture, time.monotonic())):
                    return
                self.delivered += 1
        finally:
            try:
                self.reader.close()
            except Exception:  # noqa: BLE001 - nothing useful to do about a device that fails to close
                log.warning("closing %s failed", self.reader.describe(), exc_info=True)

    def _give(self, item: tuple[str, Any, float]) -> bool:
        while not self._stop.is_set():
            try:
                self._slot.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def take(self, timeout: float | None, closing: threading.Event) -> tuple[str, Any, float] | None:
        """The next result, or ``None`` when ``timeout`` passes first or ``closing`` is set."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not closing.is_set():
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                return self._slot.get(timeout=wait)
            except queue.Empty:
                continue
        return None

    def stop(self, wait: bool) -> None:
        """Ask the thread to finish; with ``wait``, give it JOIN_S to do so (it closes the reader on its way out)."""
        self._stop.set()
        if wait:
            self._thread.join(JOIN_S)

    @property
    def alive(self) -> bool:
        """Whether the thread is still running (for an abandoned worker: still blocked in ``read()``)."""
        return self._thread.is_alive()


class FrameStream:
    """Frames from one source, captured in a background thread into a bounded queue.

    Read with :meth:`read` or iterate; both end (``None`` / stop) when the source ends, gives
    up reconnecting, or is closed. ``policy``: ``latest`` drops the oldest queued frame when
    the consumer falls behind (counted in :attr:`dropped`), ``block`` makes capture wait;
    ``auto`` picks ``latest`` for live sources and ``block`` for the others. Frames are numbered
    in capture order (gaps where frames were dropped) and stamped with ``time.monotonic()``.

    Failures are reported as events (:meth:`events`, and ``on_event``, which is called from
    the capture threads): no frame within ``read_timeout`` seconds is ``stalled``; the
    identical frame for longer than ``stale_after`` seconds is ``stale``; a failed read is
    ``disconnected``. A reconnectable source (camera, network stream) is then opened again after
    ``backoff[0]`` seconds, doubling up to ``backoff[1]``, at most ``max_retries`` times in a row
    (``None``: forever); any other source ends. ``loop`` replays a finite source from the start;
    ``max_frames`` ends the stream after that many captured frames.

    Attributes: ``uri``; ``live`` and the ``policy`` in force; ``captured`` (frames read from the
    device, dropped ones included); ``size`` (width, height of the latest frame; ``None`` before
    the first). The reader is opened in the constructor, so a source that cannot be opened
    raises there.
    """

    def __init__(self, factory: ReaderFactory, *, uri: str, policy: str = "auto", queue_size: int = 4,
                 read_timeout: float | None = 5.0, stale_after: float | None = 2.0, reconnect: bool = True,
                 max_retries: int | None = None, loop: bool = False, max_frames: int | None = None,
                 on_event: Callable[[SourceEvent], Any] | None = None,
                 backoff: tuple[float, float] = BACKOFF_S) -> None:
        _check_options(uri, policy, queue_size, read_timeout, stale_after, max_retries, max_frames, backoff)
        self.uri = uri
        self.on_event = on_event
        self.read_timeout, self.reconnect, self.max_retries = read_timeout, reconnect, max_retries
        self.loop, self.max_frames, self.backoff = loop, max_frames, backoff
        self.captured = 0
        self.size: tuple[int, int] | None = None
        self._factory = factory
        self._events: deque[SourceEvent] = deque(maxlen=EVENT_HISTORY)
        self._events_lock = threading.Lock()
        self._closing = threading.Event()
        self._stale = StaleCheck(stale_after)
        self._attempts = 0  # reconnection attempts since frames last flowed
        self._stuck: list[_ReadWorker] = []  # abandoned workers, until their blocked read() returns
        self._recovering = False
        self._last_error = ""
        reader = factory()
        self.live = bool(reader.live)
        self.policy = ("latest" if self.live else "block") if policy == "auto" else policy
        self._queue = FrameQueue(queue_size, drop_oldest=self.policy == "latest")
        reader.open(self._emit)
        self._thread = threading.Thread(target=self._run, args=(reader,), name="edgedl-source", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the consumer's side

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame; ``None`` when the stream has ended or was closed, or after ``timeout`` seconds without one."""
        return self._queue.get(timeout)

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def watch(self, event: threading.Event) -> None:
        """Have ``event`` set whenever a frame is ready or the stream ends (a consumer of several streams waits on it)."""
        self._queue.watch(event)

    def unwatch(self, event: threading.Event) -> None:
        """Stop setting ``event``."""
        self._queue.unwatch(event)

    def events(self) -> list[SourceEvent]:
        """Events since the last call, oldest first (at most EVENT_HISTORY are kept)."""
        with self._events_lock:
            pending = list(self._events)
            self._events.clear()
        return pending

    @property
    def dropped(self) -> int:
        """Frames dropped because the consumer fell behind (``latest`` policy)."""
        return self._queue.dropped

    @property
    def discarded(self) -> int:
        """Frames captured but never read because the stream was closed early.

        Once the stream has ended, ``captured`` = frames read + ``dropped`` + ``discarded``.
        """
        return self._queue.discarded

    @property
    def depth(self) -> int:
        """Frames waiting in the queue now."""
        return self._queue.depth

    @property
    def max_depth(self) -> int:
        """The most frames that have waited in the queue at once."""
        return self._queue.max_depth

    @property
    def ended(self) -> bool:
        """Whether no frame will come any more (the source ended or gave up and the queue is empty, or closed)."""
        return self._queue.drained

    def close(self) -> None:
        """Stop capturing and release the source; frames still queued are discarded. Safe to call again, from any thread."""
        self._closing.set()
        self._queue.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(JOIN_S + 1.0)

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FrameStream({self.uri!r}, policy={self.policy!r}, captured={self.captured}, dropped={self.dropped})"

    # ------------------------------------------------------------------ the capture thread

    def _run(self, reader: FrameReader) -> None:
        worker: _ReadWorker | None = _ReadWorker(reader)
        try:
            while worker is not None:
                outcome = self._pump(worker)
                if outcome is _Outcome.CLOSED:
                    return
                worker.stop(wait=not worker.stuck)
                if worker.stuck:
                    self._stuck.append(worker)
                if outcome is _Outcome.LIMIT:
                    self._emit("ended", f"max_frames={self.max_frames} reached")
                    worker = None
                elif outcome is _Outcome.END:
                    worker = self._replay(worker)
                elif self.reconnect and worker.reader.reconnectable:
                    worker = self._reconnect()
                else:
                    why = "reconnect=False" if worker.reader.reconnectable else "this source cannot reconnect"
                    self._emit("ended", f"stopped after the failure ({why})")
                    worker = None
        except Exception as exc:  # a bug here must not leave the consumer waiting forever
            log.exception("capture thread for %s failed", self.uri)
            self._emit("ended", f"capture failed: {exc!r}")
        finally:
            if worker is not None:
                worker.stop(wait=not worker.stuck)
            self._queue.finish()

    def _pump(self, worker: _ReadWorker) -> _Outcome:
        """Move frames from ``worker`` to the queue until the reader ends or fails, max_frames, or close()."""
        reconnectable = worker.reader.reconnectable
        while True:
            item = worker.take(self.read_timeout, self._closing)
            if self._closing.is_set():
                return _Outcome.CLOSED
            if item is None:
                worker.stuck = True  # a blocked read() cannot be interrupted, only abandoned
                return self._failed("stalled", f"no frame within {self.read_timeout:g} s")
            kind, payload, stamp = item
            if kind == "error":
                return self._failed("disconnected", f"read failed: {payload}")
            if kind == "none":
                return self._failed("disconnected", "the device returned no frame") if reconnectable else _Outcome.END
            capture: Capture = payload
            if self._stale.update(capture.image, stamp):
                message = f"the identical frame for more than {self._stale.limit:g} s"
                if reconnectable:  # a frozen camera or decoder: treat it as a disconnect
                    return self._failed("stale", message)
                self._emit("stale", message)  # a file may well show a still scene; report it and go on
            if not self._deliver(capture, stamp, worker.reader):
                return _Outcome.CLOSED
            if self.max_frames is not None and self.captured >= self.max_frames:
                return _Outcome.LIMIT

    def _failed(self, kind: str, message: str) -> _Outcome:
        self._emit(kind, message)
        self._last_error = f"{kind}: {message}"
        return _Outcome.FAILED

    def _deliver(self, capture: Capture, stamp: float, reader: FrameReader) -> bool:
        image = capture.image
        size = (int(image.shape[1]), int(image.shape[0]))
        if self.size is None:
            self._emit("opened", f"{reader.describe()}, {size[0]}x{size[1]}")
        elif self._recovering:
            self._emit("reconnected", f"frames flow again after {self._attempts} attempt(s)")
        if self.size is not None and size != self.size:
            self._emit("resized", f"{self.size[0]}x{self.size[1]} -> {size[0]}x{size[1]}")
        self.size, self._recovering, self._attempts = size, False, 0
        frame = Frame(image, self.captured, stamp, capture.name or self.uri, capture.truth)
        self.captured += 1
        return self._queue.put(frame)

    def _replay(self, finished: _ReadWorker) -> _ReadWorker | None:
        """A worker on a fresh reader when looping a source that gave frames; otherwise report the end."""
        if not (self.loop and finished.delivered):
            self._emit("ended", "end of stream")
            return None
        try:
            return self._open()
        except Exception as exc:  # noqa: BLE001 - reported; the stream ends
            self._emit("ended", f"cannot reopen to loop: {exc}")
            return None

    def _open(self) -> _ReadWorker:
        reader = self._factory()
        reader.open(self._emit)
        self._stale.reset()
        return _ReadWorker(reader)

    def _reconnect(self) -> _ReadWorker | None:
        """Open the source again with exponential backoff; ``None`` after max_retries failures in a row, or close()."""
        first, cap = self.backoff
        while self.max_retries is None or self._attempts < self.max_retries:
            self._attempts += 1
            delay = min(cap, first * 2 ** (self._attempts - 1))
            of = "" if self.max_retries is None else f" of {self.max_retries}"
            self._emit("reconnecting", f"attempt {self._attempts}{of} in {delay:g} s (after {self._last_error})")
            if self._closing.wait(delay):
                return None
            self._stuck = [stuck for stuck in self._stuck if stuck.alive]
            if len(self._stuck) >= MAX_STUCK_READS:
                self._last_error = f"{len(self._stuck)} earlier reads of this source are still blocked"
                continue
            try:
                worker = self._open()
            except Exception as exc:  # noqa: BLE001 - any failure to open counts as a failed attempt
                self._last_error = f"open failed: {exc}"
                continue
            self._recovering = True
            return worker
        self._emit("gave-up", f"no frames after {self._attempts} reconnection attempt(s); last: {self._last_error}")
        return None

    def _emit(self, kind: str, message: str) -> None:
        event = SourceEvent(kind, message, time.monotonic(), self.uri)
        with self._events_lock:
            self._events.append(event)
        log.debug("%s", event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - an app's callback must not stop capture; its traceback is logged
                log.exception("on_event callback failed on %s", event)


def _check_options(uri: str, policy: str, queue_size: int, read_timeout: float | None, stale_after: float | None,
                   max_retries: int | None, max_frames: int | None, backoff: tuple[float, float]) -> None:
    """Refuse stream options that make no sense, before any device is opened."""
    if policy not in POLICIES:
        raise UsageError(f"{uri}: unknown policy {policy!r}", fix=f"use one of {', '.join(POLICIES)}")
    _whole(uri, "queue_size", queue_size, 1, "use 1 (lowest latency) to a few frames", optional=False)
    _whole(uri, "max_retries", max_retries, 0, "use 0 to never reconnect, or None to retry forever")
    _whole(uri, "max_frames", max_frames, 1, "leave it out to run until the source ends")
    for name, value in (("read_timeout", read_timeout), ("stale_after", stale_after)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
            raise UsageError(f"{uri}: {name} must be a number of seconds above 0, got {value!r}",
                             fix="give it in seconds, or None to turn the check off")
    if len(backoff) != 2 or not 0 < backoff[0] <= backoff[1]:
        raise UsageError(f"{uri}: backoff must be (first delay, longest delay) in seconds, got {backoff!r}",
                         fix="use e.g. (0.5, 8.0)")


def _whole(uri: str, name: str, value: int | None, minimum: int, fix: str, optional: bool = True) -> None:
    """``value`` must be a whole number of at least ``minimum`` (or ``None``, when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{uri}: {name} must be a whole number of at least {minimum}, got {value!r}", fix=fix)
