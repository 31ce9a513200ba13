"""Frames from several sources gathered into batches, fairly, and a batch's outputs split back per frame.

:class:`SourceMux` is what the pipeline reads from when it runs several sources through one
model. Each source keeps its own capture thread and queue (its own policy, reconnection and
events); the mux only takes what is ready. A batch takes frames in rotation, at most one per
source per pass, starting one source later each batch, so no source starves another; a source
with nothing ready is skipped, never waited for, so a stalled or disconnected camera cannot hold
the others back. Once the first frame of a batch is in hand the mux waits at most ``wait_s``
for the sources that have given nothing to it yet, then runs with what it has: a source's next
frame is a frame interval away, so a batch never waits for one. With one source that makes a
batch whatever frames are already queued (a video file's backlog), and never a wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedl.errors import UsageError
from edgedl.results import Frame


@dataclass
class MuxEntry:
    """One source in the mux: its open stream and how many frames the pipeline has taken from it."""

    name: str
    stream: Any
    taken: int = 0

    def exhausted(self, max_frames: int | None) -> bool:
        """Whether no frame will be taken from it any more (its stream ended, or max_frames reached)."""
        return bool(self.stream.ended) or (max_frames is not None and self.taken >= max_frames)


class SourceMux:
    """Open streams by name; :meth:`gather` takes a fair batch of ready frames. Thread-safe: sources can be
    added and removed while another thread gathers. ``max_frames`` caps the frames taken from each source."""

    def __init__(self, max_frames: int | None = None) -> None:
        self.max_frames = max_frames
        self._entries: dict[str, MuxEntry] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._turn = 0

    def add(self, name: str, stream: Any) -> MuxEntry:
        """Take frames from ``stream`` under ``name`` from the next batch on; returns its entry."""
        with self._lock:
            if name in self._entries:
                raise UsageError(f"source {name!r} is already in this pipeline", fix="give each source once")
            stream.watch(self._arrived)
            entry = self._entries[name] = MuxEntry(name, stream)
        return entry

    def remove(self, name: str) -> MuxEntry:
        """Stop taking frames from source ``name``; returns its entry (the caller closes the stream)."""
        with self._lock:
            entry = self._entries.pop(name, None)
        if entry is None:
            raise UsageError(f"no source {name!r} in this pipeline", fix=f"sources now: {', '.join(self.names) or 'none'}")
        entry.stream.unwatch(self._arrived)
        self._arrived.set()  # a gather waiting on the removed source looks again
        return entry

    @property
    def names(self) -> list[str]:
        """The sources, in the order they were added."""
        with self._lock:
            return list(self._entries)

    def entries(self) -> list[MuxEntry]:
        """A snapshot of the entries, in the order they were added."""
        with self._lock:
            return list(self._entries.values())

    @property
    def ended(self) -> bool:
        """Whether no source will give another frame (every one ended, or none is left)."""
        return all(entry.exhausted(self.max_frames) for entry in self.entries())

    def gather(self, size: int, wait_s: float, timeout: float) -> list[tuple[str, Frame]]:
        """Up to ``size`` ready (source name, frame) pairs, in rotation over the sources; empty when none came
        within ``timeout``.

        After the first frame, waits at most ``wait_s`` while some source that can still give a frame has
        given none to this batch. Frames of one source keep their order within and across batches.
        """
        batch: list[tuple[str, Frame]] = []
        deadline = time.monotonic() + timeout
        filled_by: float | None = None
        while True:
            self._arrived.clear()  # before looking, so a frame that lands meanwhile wakes the wait below
            self._take_rounds(batch, size)
            if len(batch) >= size or self.ended or (batch and self._all_in(batch)):
                break
            now = time.monotonic()
            if batch and filled_by is None:
                filled_by = now + wait_s
            left = (filled_by if filled_by is not None else deadline) - now
            if left <= 0:
                break
            self._arrived.wait(left)
        self._turn += 1
        return batch

    def _all_in(self, batch: list[tuple[str, Frame]]) -> bool:
        """Whether every source that can still give a frame has given one to ``batch``."""
        given = {name for name, _ in batch}
        return all(entry.name in given for entry in self.entries() if not entry.exhausted(self.max_frames))

    def _take_rounds(self, batch: list[tuple[str, Frame]], size: int) -> None:
        """Passes over the sources in this batch's rotation, one ready frame from each per pass, until the batch
        is full or a pass finds nothing ready. A live source (latest-frame policy) gives at most one frame to a
        batch: its queued frames are older ones, and a batch of them would only add latency."""
        while len(batch) < size:
            took = False
            for entry in self._rotation():
                if len(batch) >= size:
                    break
                if entry.exhausted(self.max_frames) or (getattr(entry.stream, "policy", "block") == "latest"
                                                        and any(name == entry.name for name, _ in batch)):
                    continue
                frame = entry.stream.read(timeout=0)
                if frame is not None:
                    entry.taken += 1
                    batch.append((entry.name, frame))
                    took = True
            if not took:
                return

    def _rotation(self) -> Iterator[MuxEntry]:
        entries = self.entries()
        if entries:
            start = self._turn % len(entries)
            yield from entries[start:] + entries[:start]


def stack(tensors: Sequence[np.ndarray], batch: int) -> np.ndarray:
    """Single-frame input tensors (leading dim 1) as one batch of ``batch`` rows, zero-padded past the frames."""
    stacked = np.concatenate(tensors, axis=0) if len(tensors) > 1 else tensors[0]
    if batch > stacked.shape[0]:
        padding = np.zeros((batch - stacked.shape[0], *stacked.shape[1:]), stacked.dtype)
        stacked = np.concatenate([stacked, padding], axis=0)
    return stacked


def split(outputs: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """A batch's outputs as one dict per frame (leading dim 1 each); rows past ``count`` (padding) are dropped."""
    if count == 1 and all(value.shape[:1] == (1,) for value in outputs.values()):
        return [outputs]
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] < count:
            raise UsageError(f"output {name!r} has shape {value.shape}, not one row per frame of a batch of {count}",
                             fix="run this model with batch_size=1 (--batch-size 1)")
    return [{name: value[i : i + 1] for name, value in outputs.items()} for i in range(count)]
