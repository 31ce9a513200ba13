"""Image folder sink: ``frames/`` (a path ending in ``/``), an existing folder, or ``folder://frames``.

One image per frame, named by the frame's index in its source (``000123.jpg``; ``?format=png`` for
lossless PNG), each written to a temporary name and renamed, so a reader watching the folder never
sees a half-written image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import cv2

from edgedl.errors import OutputError
from edgedl.fsutil import atomic_write_bytes
from edgedl.results import Result
from edgedl.sinks.base import FrameRenderer, Sink, SinkTarget, check_writable_folder, output_failed

_FORMATS = {"jpg": "jpg", "jpeg": "jpg", "png": "png"}
_FRAME_FILE = re.compile(r"\d+\.(jpg|png)")


def _format(text: str) -> str:
    try:
        return _FORMATS[text.lower()]
    except KeyError:
        raise ValueError("must be jpg or png") from None


class FolderSink(Sink):
    """Annotated frames as numbered JPEG or PNG files in a folder (created at the first frame)."""

    schemes: ClassVar[tuple[str, ...]] = ("folder",)
    takes_folders: ClassVar[bool] = True
    options = {"format": _format}
    pictures: ClassVar[bool] = True

    def __init__(self, target: SinkTarget, *, fps: float, overlay: bool, overwrite: bool) -> None:
        super().__init__(target)
        self.folder = Path(target.location)
        self.extension = target.options.get("format", "jpg")
        self._render = FrameRenderer(overlay)
        if not self.folder.exists():
            check_writable_folder(self.folder.parent)
            return
        if not self.folder.is_dir():
            raise OutputError("is a file, not a folder", path=self.folder, fix="name a folder (frames/) or a video (out.mp4)")
        check_writable_folder(self.folder)
        if not overwrite and any(_FRAME_FILE.fullmatch(entry.name) for entry in self.folder.iterdir()):
            raise OutputError("already holds frame images", path=self.folder,
                              fix="pass --overwrite (overwrite=True) or choose an empty folder")

    def _write(self, result: Result) -> None:
        image = self._render(result)
        ok, encoded = cv2.imencode(f".{self.extension}", image)
        if not ok:  # only a broken OpenCV build lacks its own JPEG and PNG encoders
            raise RuntimeError(f"OpenCV could not encode a {self.extension} image")
        path = self.folder / f"{result.frame.index:06d}.{self.extension}"
        try:
            if self.frames == 0:
                self.folder.mkdir(exist_ok=True)
            atomic_write_bytes(path, encoded.tobytes())
        except OSError as exc:
            raise output_failed(path, exc) from None

    def _finish(self) -> None:
        """Nothing to finalize: every image was complete the moment it appeared."""
