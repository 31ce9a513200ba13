"""Which reader serves which scheme: one line per kind of source.

Entries name their factory as ``"module:attribute"`` so a reader's dependencies (OpenCV) load
only when a source of its kind is opened. A factory takes the parsed :class:`SourceSpec`,
checks its options and returns a fresh, unopened :class:`FrameReader`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from edgedl.errors import UsageError
from edgedl.sources.reader import FrameReader, ReaderFactory
from edgedl.sources.uri import SourceSpec

SpecReader = Callable[[SourceSpec], FrameReader]

READERS: dict[str, str | SpecReader] = {
    "file": "edgedl.sources.opencv_reader:file_reader",
    "v4l2": "edgedl.sources.opencv_reader:v4l2_reader",
    "rtsp": "edgedl.sources.opencv_reader:rtsp_reader",
    "rtsps": "edgedl.sources.opencv_reader:rtsp_reader",
    "csi": "edgedl.sources.opencv_reader:csi_reader",
    "gst": "edgedl.sources.opencv_reader:gst_reader",
    "folder": "edgedl.sources.folder_reader:FolderReader",
    "synthetic": "edgedl.sources.synthetic:SyntheticReader",
}

_SCHEME_NAME = re.compile(r"^[a-z][a-z0-9+.-]*$")


def register_reader(scheme: str, factory: str | SpecReader) -> None:
    """Serve ``scheme://…`` URIs with ``factory`` (a callable taking a :class:`SourceSpec`, or ``"module:attribute"``)."""
    if not _SCHEME_NAME.match(scheme):
        raise UsageError(f"{scheme!r} is not a URI scheme name", fix="use lower-case letters, digits, '+', '.' or '-'")
    READERS[scheme] = factory


def reader_factory(spec: SourceSpec) -> ReaderFactory:
    """A function that makes a fresh reader for ``spec`` (called again on every reconnection)."""
    entry = READERS.get(spec.scheme)
    if entry is None:
        known = ", ".join(f"{name}://" for name in sorted(READERS) if name != "folder")
        raise UsageError(f"{spec.uri}: unknown source scheme {spec.scheme!r}",
                         fix=f"use one of {known}, a file or folder path, a glob, or a camera index")
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
    make: SpecReader = entry
    return lambda: make(spec)
