"""One output per source: a file or folder sink URI with ``{source}`` (``out-{source}.mp4``, ``frames-{source}/``).

Each source gets its own sink of the kind the template names, opened when that source's first
result arrives, at the template's path with ``{source}`` replaced by the source's name made safe
for a file name (:func:`file_slug`: ``rtsp://cam1:554/live`` → ``rtsp-cam1-554-live``). Two sources
never share a file: a source whose slug another source has taken already (compared ignoring case,
for file systems that do) gets its own with a short hash of its full name added
(``rtsp-cam1-554-live-3f2a9c1e``); so does a name that lost characters on the way
(letters outside ASCII, a name cut at :data:`MAX_SLUG` characters).

``{source}`` may appear only in the last part of the path, so the folder it writes into is checked
when the sink opens; each concrete file or folder is checked (``overwrite`` honoured) when its source
appears, as the sink of that kind checks it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from edgedl.errors import UsageError
from edgedl.results import Result
from edgedl.sinks.base import Sink, SinkTarget, check_writable_folder

#: The one placeholder a sink URI may hold.
PLACEHOLDER = "{source}"
#: Longest readable part of a slug; longer names are cut and get a hash.
MAX_SLUG = 64

_FIELD = re.compile(r"(\{[^{}]*\})")
_SEPARATORS = re.compile(r"[^A-Za-z0-9._]+")  # every run of anything else becomes one '-'
_FIX = "write {source} in the file or folder name, for example out-{source}.mp4 or frames-{source}/"


def is_template(location: str) -> bool:
    """Whether a file or folder sink location asks for one sink per source (it holds a brace)."""
    return "{" in location or "}" in location


def file_slug(name: str) -> str:
    """``name`` as a file-name part: ASCII letters, digits, ``.``, ``_`` and ``-``, no leading dot, never empty.

    Separators (``://``, ``/``, ``:``, ``?``, ``=``, spaces…) become ``-``; a name that loses more than
    its separators (letters outside ASCII, more than :data:`MAX_SLUG` characters) gets a hash of the
    whole name added, so the slug still tells it apart. An empty name is ``source``.
    """
    readable = _SEPARATORS.sub("-", name).strip("-.")
    lost = not name.isascii() or len(readable) > MAX_SLUG
    base = readable[:MAX_SLUG].rstrip("-.") or "source"
    return f"{base}-{_digest(name)}" if lost else base


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _check_template(target: SinkTarget) -> None:
    """Refuse placeholders other than ``{source}``, stray braces, and ``{source}`` in a folder above the file."""
    pieces = _FIELD.split(target.location)
    for field in pieces[1::2]:
        if field != PLACEHOLDER:
            raise UsageError(f"{target.uri}: unknown placeholder {field} in the sink",
                             fix=f"the one placeholder is {PLACEHOLDER}, the source's name: {_FIX}")
    if any(is_template(text) for text in pieces[0::2]):
        raise UsageError(f"{target.uri}: a brace without its pair in the sink path", fix=_FIX)
    if PLACEHOLDER in str(Path(target.location).parent):
        raise UsageError(f"{target.uri}: {PLACEHOLDER} may only be in the file or folder name, not in the folders above it",
                         fix=_FIX)


class PerSourceSink(Sink):
    """A sink of ``kind`` for each source, at the template ``target`` with ``{source}`` filled in.

    ``open_sink`` returns one for a file or folder URI that holds ``{source}``. ``close`` closes every
    source's sink, all of them even when one fails, then raises the first error.
    """

    def __init__(self, kind: type[Sink], target: SinkTarget, *, fps: float, overlay: bool, overwrite: bool) -> None:
        super().__init__(target)
        _check_template(target)
        check_writable_folder(Path(target.location).parent)
        self.kind = kind
        self._template = target
        self._settings = {"fps": fps, "overlay": overlay, "overwrite": overwrite}
        self._slugs: dict[str, str] = {}  # source → the slug it was given
        self._taken: set[str] = set()  # slugs given, in lower case
        self._sinks: dict[str, Sink] = {}

    @property
    def sinks(self) -> dict[str, Sink]:
        """Each source's sink, by source name, in the order the sources appeared."""
        return dict(self._sinks)

    def _claim(self, source: str) -> str:
        """The file-name part ``source`` gets: the first source to claim a slug keeps it, later ones add a hash."""
        if source not in self._slugs:
            base = file_slug(source)
            candidate, tries = base, 0
            while candidate.lower() in self._taken:
                tries += 1
                candidate = f"{base}-{_digest(source)}" + (f"-{tries}" if tries > 1 else "")
            self._slugs[source] = candidate
            self._taken.add(candidate.lower())
        return self._slugs[source]

    def _write(self, result: Result) -> None:
        source = result.source
        sink = self._sinks.get(source)
        if sink is None:
            sink = self._sinks[source] = self._open(source)
        sink.write(result)

    def _open(self, source: str) -> Sink:
        slug = self._claim(source)
        template = self._template
        target = SinkTarget(template.uri.replace(PLACEHOLDER, slug), template.scheme,
                            template.location.replace(PLACEHOLDER, slug), template.options)
        return self.kind(target, **self._settings)

    def _finish(self) -> None:
        first: BaseException | None = None
        for sink in self._sinks.values():
            try:
                sink.close()
            except BaseException as exc:  # close the others first: each holds a file to finalize
                first = first or exc
        if first is not None:
            raise first
