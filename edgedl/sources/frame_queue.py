"""The bounded queue between a source's capture thread and its consumer, with the two overflow policies.

``latest`` (live sources): a full queue drops its oldest frame to make room, so a slow consumer
always gets the newest frames and latency stays bounded; drops are counted. ``block`` (files,
folders): a full queue makes the capture thread wait — back-pressure, nothing is lost. Frames
that ``close()`` discards unread are counted apart (``discarded``), so every frame put is taken,
dropped or discarded.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from edgedl.results import Frame

POLICIES: tuple[str, ...] = ("auto", "latest", "block")


class FrameQueue:
    """A bounded, thread-safe frame queue; :meth:`finish` marks the end, :meth:`close` abandons what is left."""

    def __init__(self, size: int, drop_oldest: bool) -> None:
        self.size = size
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.discarded = 0
        self.max_depth = 0
        self._frames: deque[Frame] = deque()
        self._ready = threading.Condition()
        self._finished = False
        self._closed = False
        self._watchers: list[threading.Event] = []

    def watch(self, event: threading.Event) -> None:
        """Set ``event`` whenever a frame is queued or the queue finishes or closes, so one consumer can
        wait on several queues at once instead of polling them."""
        with self._ready:
            self._watchers.append(event)
            event.set()

    def unwatch(self, event: threading.Event) -> None:
        """Stop setting ``event``."""
        with self._ready:
            if event in self._watchers:
                self._watchers.remove(event)

    def _wake(self) -> None:
        self._ready.notify_all()
        for event in self._watchers:
            event.set()

    def put(self, frame: Frame) -> bool:
        """Queue ``frame`` (dropping the oldest, or waiting for room); ``False`` when the queue was closed meanwhile."""
        with self._ready:
            while len(self._frames) >= self.size and not self._closed:
                if self.drop_oldest:
                    self._frames.popleft()
                    self.dropped += 1
                else:
                    self._ready.wait()
            if self._closed:
                self.discarded += 1
                return False
            self._frames.append(frame)
            self.max_depth = max(self.max_depth, len(self._frames))
            self._wake()
            return True

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame; ``None`` after ``timeout`` seconds, or once the queue is finished and empty, or closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._frames and not self._finished and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._ready.wait(left)
            if self._closed or not self._frames:
                return None
            frame = self._frames.popleft()
            self._ready.notify_all()  # a capture thread may be waiting for room
            return frame

    def finish(self) -> None:
        """No more frames will come; readers get what is queued, then ``None``."""
        with self._ready:
            self._finished = True
            self._wake()

    def close(self) -> None:
        """Wake everyone waiting and refuse further frames; queued frames are discarded (and counted)."""
        with self._ready:
            self._closed = True
            self.discarded += len(self._frames)
            self._frames.clear()
            self._wake()

    @property
    def depth(self) -> int:
        """Frames queued now."""
        return len(self._frames)

    @property
    def drained(self) -> bool:
        """Whether no frame will ever come out again."""
        with self._ready:
            return self._closed or (self._finished and not self._frames)
