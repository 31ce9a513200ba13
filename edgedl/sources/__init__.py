"""Frame sources: cameras, network streams, files, image folders and synthetic scenes behind one URI.

    from edgedl.sources import open_source

    with open_source("csi://0", width=1280, height=720, fps=30) as stream:
        for frame in stream:                  # edgedl.results.Frame: image, index, timestamp, truth
            ...
        print(stream.dropped, stream.events())

A stream captures in a background thread into a bounded queue: live sources keep the newest
frames (dropping and counting the oldest when the consumer falls behind), files and folders
make capture wait instead. Read deadlines, stale-frame detection and reconnection with backoff
keep a flaky camera going, and each of them is reported as an event. See :mod:`.uri` for the
URIs, :mod:`.stream` for the behaviour and :mod:`.reader` for adding a new kind of source.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from edgedl.results import SourceEvent
from edgedl.sources.reader import Capture, FrameReader, ReaderFactory
from edgedl.sources.registry import reader_factory, register_reader
from edgedl.sources.stream import BACKOFF_S, FrameStream
from edgedl.sources.uri import SourceSpec, parse_source

__all__ = ["Capture", "FrameReader", "FrameStream", "ReaderFactory", "SourceSpec", "open_source",
           "parse_source", "register_reader"]


def open_source(uri: str | os.PathLike[str] | int, *, width: int | None = None, height: int | None = None,
                fps: float | None = None, queue_size: int = 4, policy: str = "auto", read_timeout: float | None = 5.0,
                stale_after: float | None = 2.0, reconnect: bool = True, max_retries: int | None = None,
                loop: bool = False, max_frames: int | None = None,
                on_event: Callable[[SourceEvent], Any] | None = None,
                backoff: tuple[float, float] = BACKOFF_S) -> FrameStream:
    """Open ``uri`` and start capturing; see :class:`FrameStream` for every option but these.

    ``width``, ``height`` and ``fps`` ask a camera or synthetic source for that size and rate
    (they override the same options in the URI's query). A source that cannot be opened raises
    here: :class:`~edgedl.errors.UsageError` for a bad URI or option,
    :class:`~edgedl.errors.InputFileError` for a missing or unreadable file or device,
    :class:`~edgedl.errors.MissingDependencyError` when OpenCV lacks GStreamer.
    """
    spec = parse_source(uri, {"width": width, "height": height, "fps": fps}, read_timeout)
    return FrameStream(reader_factory(spec), uri=spec.uri, policy=policy, queue_size=queue_size,
                       read_timeout=read_timeout, stale_after=stale_after, reconnect=reconnect, max_retries=max_retries,
                       loop=loop, max_frames=max_frames, on_event=on_event, backoff=backoff)
