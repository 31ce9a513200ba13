"""What every sink shares: the protocol, the parsed URI, output-path checks, and the annotated image.

A sink takes each :class:`~edgedl.results.Result` of a stream (``write``) and finalizes its
output on ``close`` (idempotent), so a video is playable and a temporary file renamed into place
whether the run ended normally, by Ctrl-C or by an error. ``Pipeline`` accepts any object with
``write(result)`` and ``close()``; subclass :class:`Sink` to get the locking, the context manager
and the one-time close.
"""

from __future__ import annotations

import abc
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from edgedl.errors import OutputError
from edgedl.overlay import Trails, draw
from edgedl.results import Result


@dataclass(frozen=True)
class SinkTarget:
    """A sink URI taken apart: ``scheme`` ('' for a plain path), ``location`` and ``?key=value`` options."""

    uri: str
    scheme: str
    location: str
    options: dict[str, Any] = field(default_factory=dict)


class Sink(abc.ABC):
    """Where results go. Subclasses say which URIs name them and implement ``_write`` and ``_finish``.

    ``open_sink`` constructs a subclass as ``cls(target, fps=…, overlay=…, overwrite=…)``; a sink
    ignores the arguments that do not apply to it. A sink that ``nests`` also gets ``inner=``: the
    sink its location names, opened without overlay.

    ``write`` and ``close`` may be called from different threads (the pipeline writes from a stage
    thread and closes from the app's); a lock keeps a frame from being written while the output is
    being finalized. ``stop_requested`` turns true when the sink wants the stream to end (the user
    pressed q in a display window).
    """

    #: URI schemes that name this sink (``display``, ``rtsp`` …).
    schemes: ClassVar[tuple[str, ...]] = ()
    #: File extensions that name this sink when the URI is a plain path or ``file://`` (``.mp4`` …).
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: Whether a folder (a path ending in ``/`` or an existing directory) names this sink.
    takes_folders: ClassVar[bool] = False
    #: ``?key=value`` options this sink accepts, each with the function that converts its text (raises ValueError).
    options: ClassVar[dict[str, Callable[[str], Any]]] = {}
    #: Whether the sink outputs the frames as pictures (so it can carry a mosaic of several sources).
    pictures: ClassVar[bool] = False
    #: Whether the URI's location is another sink's URI (``tiled://out.mp4``), options it does not take included.
    nests: ClassVar[bool] = False

    stop_requested: bool = False

    def __init__(self, target: SinkTarget) -> None:
        self.uri = target.uri
        self.frames = 0  # results written so far
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def write(self, result: Result) -> None:
        """Send one result to the sink."""
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.uri}: write to a closed sink")
            self._write(result)
            self.frames += 1

    def close(self) -> None:
        """Finalize the output (flush, release, rename into place); later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._finish()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _write(self, result: Result) -> None:
        """Write one result (called under the lock, never after close)."""

    @abc.abstractmethod
    def _finish(self) -> None:
        """Finalize the output (called once, under the lock)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def positive_float(text: str) -> float:
    """An option value that must be a finite number above zero (frame rates)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a number above 0")
    return value


def check_output_file(path: Path, overwrite: bool) -> None:
    """Refuse a sink file that exists (without ``overwrite``), is a folder, or sits in a missing or read-only folder."""
    if path.is_dir():
        raise OutputError("is a folder, not a file", path=path,
                          fix="name a file, or end the sink with / to write one image per frame")
    if path.exists() and not overwrite:
        raise already_exists(path)
    check_writable_folder(path.parent)


def already_exists(path: Path) -> OutputError:
    """The one-line error for a sink file that is there already."""
    return OutputError("already exists", path=path, fix="pass --overwrite (overwrite=True) or choose another --sink")


def check_writable_folder(folder: Path) -> None:
    """Refuse a folder that does not exist or that this process cannot create files in."""
    if not folder.is_dir():
        raise OutputError("folder does not exist", path=folder, fix="create it first or choose another --sink")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError("folder is not writable", path=folder, fix="choose a writable --sink path")


def output_failed(path: Path, exc: OSError) -> OutputError:
    """The one-line error for an OS failure while writing a sink's output."""
    return OutputError(f"cannot write ({exc.strerror or exc})", path=path, fix="check the disk and the folder's permissions")


class FrameRenderer:
    """The image a picture-writing sink outputs for a result: the frame, or an annotated copy.

    With ``overlay`` it draws boxes, labels, classes and masks plus the rate at which results reach
    the sink (a moving average) and the result's latency, and, when a tracker runs, track ids and
    trails (one :class:`~edgedl.overlay.Trails` per source). The frame itself is never changed.
    """

    def __init__(self, overlay: bool) -> None:
        self.overlay = overlay
        self._last: float | None = None
        self._fps: float | None = None
        self._trails: dict[str, Trails] = {}

    def __call__(self, result: Result) -> np.ndarray:
        if not self.overlay:
            return result.frame.image
        trails = self._trails.setdefault(result.source, Trails())
        return draw(result.frame.image, result, fps=self._tick(), trails=trails)

    def _tick(self) -> float | None:
        now = time.monotonic()
        if self._last is not None and now > self._last:
            rate = 1.0 / (now - self._last)
            self._fps = rate if self._fps is None else 0.9 * self._fps + 0.1 * rate
        self._last = now
        return self._fps


class VideoWriterSink(Sink):
    """A sink that feeds (annotated) frames to a ``cv2.VideoWriter`` opened at the first frame's size.

    A video's frame size is fixed when its writer opens, so later frames of another size are resized to it.
    """

    pictures: ClassVar[bool] = True

    def __init__(self, target: SinkTarget, overlay: bool) -> None:
        super().__init__(target)
        self._render = FrameRenderer(overlay)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    @abc.abstractmethod
    def _open_writer(self, size: tuple[int, int]) -> cv2.VideoWriter:
        """An opened writer for frames of ``size`` (width, height), or an EdgeDLError saying why not."""

    def _write(self, result: Result) -> None:
        image = self._render(result)
        if self._writer is None:
            size = (image.shape[1], image.shape[0])
            self._writer, self._size = self._open_writer(size), size
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.release()
