"""Where a stream's results go: ``open_sink(uri)`` picks the sink a URI names.

    out.mp4, out.avi, out.mkv, out.mov, file://out.mp4     video file (annotated frames)
    frames/, an existing folder, folder://frames           one image per frame (?format=png)
    results.jsonl                                          one JSON object per frame
    display, display://TITLE                               a window (where a display exists)
    rtsp://server:8554/path, rtp://host:port, gst://appsrc ! …   a live H.264 stream (OpenCV with GStreamer)
    tiled://overview.mp4?cols=2&width=1280                 every source's latest frame in one grid mosaic, written
                                                           once per round of sources to the sink after tiled://
                                                           (options cols, sources, width, height: see sinks.tiled)

A file or folder URI with ``{source}`` in its name (``out-{source}.mp4``, ``results-{source}.jsonl``,
``frames-{source}/``) opens one sink per source, when that source's first result arrives, with the
source's name made safe for a file name (``rtsp://cam1:554/live`` → ``out-rtsp-cam1-554-live.mp4``;
see sinks.per_source). ``{source}`` is the one placeholder, and only file and folder sinks take it:
windows and streams are one output each (``tiled://display`` shows every source in one window).

A new kind of sink is one new module with a :class:`Sink` subclass (its ``schemes``, ``suffixes``
or ``takes_folders`` say which URIs name it) plus one entry in :data:`SINKS`.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl

from edgedl.errors import UsageError
from edgedl.sinks.base import Sink, SinkTarget
from edgedl.sinks.display import DisplaySink
from edgedl.sinks.folder import FolderSink
from edgedl.sinks.jsonl import JsonLinesSink, to_record
from edgedl.sinks.per_source import PLACEHOLDER, PerSourceSink, is_template
from edgedl.sinks.stream import StreamSink
from edgedl.sinks.tiled import TiledSink
from edgedl.sinks.video import VideoSink

__all__ = ["SINKS", "DisplaySink", "FolderSink", "JsonLinesSink", "PerSourceSink", "Sink", "SinkTarget", "StreamSink",
           "TiledSink", "VideoSink", "open_sink", "to_record"]

#: Every sink kind; ``open_sink`` asks each which URIs it takes.
SINKS: tuple[type[Sink], ...] = (VideoSink, FolderSink, JsonLinesSink, DisplaySink, StreamSink, TiledSink)

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_PATH_SCHEMES = ("", "file", "folder")  # URIs whose location is a file-system path


def _kinds_hint() -> str:
    suffixes = ", ".join(suffix for cls in SINKS for suffix in cls.suffixes)
    schemes = ", ".join(f"{scheme}://" for cls in SINKS for scheme in cls.schemes)
    return f"name a file ending in {suffixes}, a folder ending in /, display, or a URI starting with {schemes}"


def open_sink(uri: str | os.PathLike[str], *, fps: float = 30.0, overlay: bool = True, overwrite: bool = False) -> Sink:
    """Open the sink ``uri`` names (see the module docstring for the kinds).

    ``fps`` is the frame rate written into videos and streams (``?fps=`` on a video URI overrides it);
    ``overlay`` draws boxes, labels, classes and masks onto a copy of each frame for the sinks that
    show pictures; ``overwrite`` replaces an existing file or frames in a folder. Paths and
    permissions are checked here; files are created when the first result arrives, so a run that
    fails to start writes nothing. A file or folder URI with ``{source}`` opens a :class:`PerSourceSink`.
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0):
        raise UsageError(f"sink fps must be a number above 0, got {fps!r}", fix="for example fps=30")
    try:
        text = os.fspath(uri)
    except TypeError:
        raise UsageError(f"a sink is a path or a URI string, got {type(uri).__name__}", fix=_kinds_hint()) from None
    cls, target = _resolve(str(text))
    if target.scheme in _PATH_SCHEMES and is_template(target.location):
        return PerSourceSink(cls, target, fps=float(fps), overlay=overlay, overwrite=overwrite)
    if PLACEHOLDER in target.uri:
        raise UsageError(f"{target.uri}: {PLACEHOLDER} opens one file per source, which only a file or folder sink can do",
                         fix="write it in a file or folder name (out-{source}.mp4, frames-{source}/), "
                             "or show every source in one picture with tiled:// (tiled://display)")
    if not cls.nests:
        return cls(target, fps=float(fps), overlay=overlay, overwrite=overwrite)
    inner = open_sink(target.location, fps=fps, overlay=False, overwrite=overwrite)  # the nesting sink draws
    try:
        return cls(target, fps=float(fps), overlay=overlay, overwrite=overwrite, inner=inner)
    except BaseException:
        inner.close()
        raise


def _resolve(uri: str) -> tuple[type[Sink], SinkTarget]:
    if not uri.strip():
        raise UsageError("the sink is empty", fix=_kinds_hint())
    match = _SCHEME.fullmatch(uri)
    if match:
        scheme, rest = match.group(1).lower(), match.group(2)
    else:  # a plain path, or the one bare word
        scheme, rest = ("display", "") if uri == "display" else ("", uri)
    if scheme in _PATH_SCHEMES:
        return _resolve_path(uri, scheme, rest)
    cls = next((cls for cls in SINKS if scheme in cls.schemes), None)
    if cls is None:
        raise UsageError(f"{uri}: unknown sink kind {scheme}://", fix=_kinds_hint())
    if cls.nests:
        location, query = _split_nested(uri, rest, cls)
    else:
        location, query = _split_query(rest) if cls.options else (rest, "")
    return cls, SinkTarget(uri, scheme, location, _options(uri, query, cls))


def _resolve_path(uri: str, scheme: str, rest: str) -> tuple[type[Sink], SinkTarget]:
    location, query = _split_query(rest)
    if not location:
        raise UsageError(f"{uri}: no path in the sink", fix=_kinds_hint())
    suffix = Path(location).suffix.lower()
    by_suffix = next((cls for cls in SINKS if suffix and suffix in cls.suffixes), None)
    # A name with a file extension means a file, even where a folder of that name exists (the file sink refuses it).
    if scheme == "folder" or location.endswith(("/", os.sep)) or (by_suffix is None and Path(location).is_dir()):
        cls = next(cls for cls in SINKS if cls.takes_folders)
    elif by_suffix is not None:
        cls = by_suffix
    else:
        kind = f"file type {suffix!r}" if suffix else "kind (no extension, and no folder of that name)"
        raise UsageError(f"{uri}: unknown sink {kind}", fix=_kinds_hint())
    return cls, SinkTarget(uri, scheme, location, _options(uri, query, cls))


def _split_query(text: str) -> tuple[str, str]:
    location, mark, query = text.rpartition("?")
    return (location, query) if mark else (text, "")


def _split_nested(uri: str, rest: str, cls: type[Sink]) -> tuple[str, str]:
    """A nesting sink's inner URI, with the options the nesting sink does not take left on it, and its own options."""
    inner, query = _split_query(rest)
    if not inner:
        scheme = cls.schemes[0]
        raise UsageError(f"{uri}: no sink after {scheme}://", fix=f"name where it writes, for example {scheme}://out.mp4")
    pairs = query.split("&") if query else []
    own = [pair for pair in pairs if pair.partition("=")[0] in cls.options]
    passed = [pair for pair in pairs if pair not in own]
    return (f"{inner}?{'&'.join(passed)}" if passed else inner), "&".join(own)


def _options(uri: str, query: str, cls: type[Sink]) -> dict[str, object]:
    """``?key=value&…`` converted by the sink's own option functions; unknown keys and bad values are UsageErrors."""
    if not query:
        return {}
    accepted = ", ".join(cls.options) or "none"
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise UsageError(f"{uri}: cannot read the options after '?'",
                         fix=f"write ?key=value&key=value (options: {accepted})") from None
    options: dict[str, object] = {}
    for key, value in pairs:
        convert = cls.options.get(key)
        if convert is None:
            raise UsageError(f"{uri}: unknown option {key!r} for this sink", fix=f"options it takes: {accepted}")
        try:
            options[key] = convert(value)
        except ValueError as exc:
            raise UsageError(f"{uri}: option {key}={value!r}: {exc}", fix=f"correct the value after {key}=") from None
    return options
