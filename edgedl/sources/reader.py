"""The device-specific half of a source: a :class:`FrameReader` opens a device, file or generator and reads frames.

Everything else — the capture thread, the bounded queue and its drop policy, read deadlines,
stale-frame detection, reconnection and events — lives once in :mod:`edgedl.sources.stream`
and works the same for every reader. A new kind of source is one reader file plus one line in
:mod:`edgedl.sources.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: How a reader reports something the app may want to know: ``report(kind, message)``.
Report = Callable[[str, str], None]


@dataclass
class Capture:
    """One frame as a reader delivers it: BGR uint8 ``H x W x 3``, with ground truth and a name where known.

    ``name`` labels this frame's origin when it is more precise than the URI (a folder
    source names the image file).
    """

    image: np.ndarray
    truth: Any = None
    name: str = ""


class FrameReader(Protocol):
    """Opens one source and reads its frames; used from one thread at a time.

    ``live``: frames arrive in real time whether or not anyone reads them (a camera), so a slow
    consumer should see the newest frame, not a backlog. ``reconnectable``: a failed or stuck
    read may be cured by opening the source again (cameras, network streams); for the others a
    failure ends the stream.
    """

    live: bool
    reconnectable: bool

    def open(self, report: Report) -> None:
        """Open the source; raise an :class:`~edgedl.errors.EdgeDLError` that says why when it cannot.

        ``report(kind, message)`` is how the reader tells the app about things it handles itself
        (a folder source skipping an unreadable image); it may be called from the capture thread.
        """

    def read(self) -> Capture | None:
        """The next frame, blocking until it is there; ``None`` when the source has no more.

        For a reconnectable reader ``None`` means the device stopped giving frames; for the
        others, the end of the source.
        """

    def close(self) -> None:
        """Release the device or file. Called once, from the thread that last read."""

    def describe(self) -> str:
        """One line saying what this reader reads and how (backend, device, pipeline)."""


#: Makes a fresh, unopened reader; called again for each reconnection.
ReaderFactory = Callable[[], FrameReader]
