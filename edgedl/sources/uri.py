"""Source URIs: what the user wrote → a :class:`SourceSpec` naming the reader and its typed options.

    csi://0?width=1920&height=1080&fps=30&flip=2     Jetson CSI camera (GStreamer nvarguscamerasrc)
    v4l2:///dev/video0?width=1280&height=720&format=MJPG,  /dev/video0,  0     V4L2 / USB camera
    rtsp://host/stream                                 network camera (hardware decode on Jetson)
    clip.mp4,  file://clip.mp4                         video file
    photos/,  'photos/*.jpg'                           image folder or glob, in name order
    gst://videotestsrc ! videoconvert ! appsink        any GStreamer pipeline ending in appsink
    synthetic://shapes?width=640&height=480&fps=30&frames=300&objects=3&seed=0,  synthetic://noise

Options come from the query (``?width=640``) of the schemes that take them and from keyword
arguments, which win. RTSP, GStreamer and file URIs are passed on whole: a camera's own URL
may have a query, and ``?`` is a glob wildcard.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from edgedl.errors import InputFileError, UsageError

#: Schemes whose text after ``://`` is used whole (no ``?query`` options).
OPAQUE_SCHEMES = frozenset({"rtsp", "rtsps", "gst", "file"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
_GLOB_CHARS = re.compile(r"[*?\[]")
_DEVICE = re.compile(r"^/dev/video\d+$")
_FOURCC = re.compile(r"^[A-Za-z0-9 ]{4}$")


def _number(kind: type, low: float, high: float | None = None) -> Callable[[Any], Any]:
    """A converter to ``kind`` (int or float) within ``[low, high]``; returns the value or raises ValueError."""

    def convert(raw: Any) -> Any:
        if isinstance(raw, bool):
            raise ValueError
        value = kind(raw) if kind is float or isinstance(raw, int) else int(str(raw), 10)
        if not (low <= value and (high is None or value <= high)) or value != value:  # NaN fails every comparison
            raise ValueError
        return value

    return convert


def _fourcc(raw: Any) -> str:
    if not isinstance(raw, str) or not _FOURCC.match(raw):
        raise ValueError
    return raw.upper()


#: Every option a reader may take: converter and what a valid value looks like (for messages).
OPTIONS: dict[str, tuple[Any, str]] = {
    "width": (_number(int, 1, 16384), "a whole number of pixels from 1 to 16384"),
    "height": (_number(int, 1, 16384), "a whole number of pixels from 1 to 16384"),
    "fps": (_number(float, 0.0, 1000.0), "frames per second from 0 to 1000"),
    "frames": (_number(int, 1), "a whole number of frames, at least 1"),
    "objects": (_number(int, 1, 16), "a whole number of shapes from 1 to 16"),
    "seed": (_number(int, 0), "a whole number, at least 0"),
    "flip": (_number(int, 0, 7), "nvvidconv's flip-method, a whole number from 0 to 7"),
    "format": (_fourcc, "a four-character code such as MJPG or YUYV"),
}


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source: which reader (``scheme``), what it reads (``target``) and its typed ``options``.

    ``uri`` is the source as the user wrote it, for messages and :attr:`Frame.source`.
    ``read_timeout`` is the stream's read deadline, which readers with their own timeouts
    (network streams) use too.
    """

    uri: str
    scheme: str
    target: str
    options: Mapping[str, Any] = field(default_factory=dict)
    read_timeout: float | None = None

    def option(self, name: str, default: Any = None) -> Any:
        """An option's value, or ``default`` when it was not given."""
        return self.options.get(name, default)

    def accept(self, allowed: Iterable[str], why: str = "") -> None:
        """Refuse options this reader does not take, with a message listing the ones it does."""
        allowed = tuple(allowed)
        extra = sorted(set(self.options) - set(allowed))
        if extra:
            takes = f"this source takes {', '.join(allowed)}" if allowed else "this source takes no options"
            raise UsageError(f"{self.uri}: option {', '.join(extra)} does not apply here{why}",
                             fix=f"leave it out; {takes}")


def parse_source(uri: str | os.PathLike[str] | int, overrides: Mapping[str, Any] | None = None,
                 read_timeout: float | None = None) -> SourceSpec:
    """Parse ``uri`` into a :class:`SourceSpec`; ``overrides`` (keyword options, ``None`` = not given) win over the query.

    Raises :class:`UsageError` for an unknown scheme or a bad option, :class:`InputFileError`
    for a path that does not exist.
    """
    given = {name: value for name, value in (overrides or {}).items() if value is not None}
    if isinstance(uri, bool) or not isinstance(uri, (str, os.PathLike, int)):
        raise UsageError(f"a source must be a URI, a path or a camera index, not {type(uri).__name__} {uri!r}",
                         fix="pass e.g. 'clip.mp4', '/dev/video0', 0, 'rtsp://…' or 'synthetic://shapes'")
    if isinstance(uri, int):
        if uri < 0:
            raise UsageError(f"camera index {uri} is negative", fix="use 0 for the first camera (/dev/video0)")
        return _spec(str(uri), "v4l2", str(uri), {}, given, read_timeout)
    text = os.fspath(uri)
    match = _SCHEME.match(text) if isinstance(uri, str) else None
    if match is None:
        if text.isdigit() or _DEVICE.match(text):
            return _spec(text, "v4l2", text, {}, given, read_timeout)
        return _spec(text, *_local(text, text), {}, given, read_timeout)
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme in OPAQUE_SCHEMES:
        if scheme == "file":
            return _spec(text, *_local(unquote(rest), text), {}, given, read_timeout)
        return _spec(text, scheme, text if scheme.startswith("rtsp") else rest, {}, given, read_timeout)
    target, _, query = rest.partition("?")
    return _spec(text, scheme, target, _query(text, query), given, read_timeout)


def _local(path: str, uri: str) -> tuple[str, str]:
    """``(scheme, target)`` of a path: a video file, an image folder, or a glob pattern (which a folder reader expands)."""
    expanded = os.path.expanduser(path)
    if not expanded:
        raise UsageError("the source is empty", fix="pass a path, a URI (rtsp://…, synthetic://shapes) or a camera index")
    found = Path(expanded)
    if found.is_dir():
        return "folder", expanded
    if found.exists():
        return "file", expanded
    if _GLOB_CHARS.search(expanded):
        return "folder", expanded
    raise InputFileError(f"{uri}: no such file or folder",
                         fix="check the path; a camera is /dev/videoN, v4l2:///dev/videoN or its index, "
                             "a network stream rtsp://…")


def _query(uri: str, query: str) -> dict[str, str]:
    if not query:
        return {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise UsageError(f"{uri}: cannot read the options after '?'", fix="write them as ?name=value&name=value") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name in options:
            raise UsageError(f"{uri}: option {name} is given twice", fix="give each option once")
        options[name] = value
    return options


def _spec(uri: str, scheme: str, target: str, query: Mapping[str, Any], given: Mapping[str, Any],
          read_timeout: float | None) -> SourceSpec:
    """Check every option's name and value; keyword options replace query ones."""
    options: dict[str, Any] = {}
    for name, raw in {**query, **given}.items():
        if name not in OPTIONS:
            raise UsageError(f"{uri}: unknown option {name!r}", fix=f"options are {', '.join(OPTIONS)}")
        convert, valid = OPTIONS[name]
        try:
            options[name] = convert(raw)
        except (TypeError, ValueError):
            raise UsageError(f"{uri}: option {name}={raw!r} is not {valid}", fix=f"give {name} as {valid}") from None
    return SourceSpec(uri, scheme, target, options, read_timeout)
