"""Video file sink: ``out.mp4``, ``out.avi``, ``out.mkv``, ``out.mov``, ``file://…`` (options ``?fps=25&fourcc=XVID``).

The video is written to a hidden temporary file beside the target (``.out.<random>.partial.mp4``:
the extension stays last because OpenCV picks the container from it) and renamed into place by
``close()``, so a crash never leaves a truncated video under the final name.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import ClassVar

import cv2

from edgedl.errors import MissingDependencyError, OutputError
from edgedl.sinks.base import SinkTarget, VideoWriterSink, check_output_file, output_failed, positive_float

log = logging.getLogger("edgedl.sinks")

#: The codec each container gets by default: ones every OpenCV build with FFmpeg can both write and read back.
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


def _fourcc(text: str) -> str:
    if len(text) != 4:
        raise ValueError("must be four characters, such as mp4v, MJPG or XVID")
    return text


class VideoSink(VideoWriterSink):
    """Annotated frames into a video file, at the first frame's size (later frames are resized to it)."""

    suffixes: ClassVar[tuple[str, ...]] = tuple(FOURCC_BY_SUFFIX)
    options = {"fps": positive_float, "fourcc": _fourcc}

    def __init__(self, target: SinkTarget, *, fps: float, overlay: bool, overwrite: bool) -> None:
        super().__init__(target, overlay)
        self.path = Path(target.location)
        check_output_file(self.path, overwrite)
        self.fps = float(target.options.get("fps", fps))
        self.fourcc = target.options.get("fourcc", FOURCC_BY_SUFFIX[self.path.suffix.lower()])
        self._partial: Path | None = None

    def _open_writer(self, size: tuple[int, int]) -> cv2.VideoWriter:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".partial{self.path.suffix}",
                                        dir=self.path.parent)
        except OSError as exc:
            raise output_failed(self.path, exc) from None
        os.close(fd)
        partial = Path(name)
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*self.fourcc), self.fps, size)
        if not writer.isOpened():
            partial.unlink(missing_ok=True)
            raise MissingDependencyError(f"this OpenCV cannot write {self.fourcc!r} video into {self.path.suffix} files",
                                         path=self.path, fix="try another container (out.avi writes MJPG) or ?fourcc=…, "
                                                             "or install an OpenCV built with FFmpeg")
        self._partial = partial
        return writer

    def _finish(self) -> None:
        if self._partial is None:
            log.info("%s: no frames arrived; no video written", self.path)
            return
        super()._finish()
        try:
            os.replace(self._partial, self.path)
        except OSError as exc:  # the finished video stays where it is: the message says where
            raise OutputError(f"cannot move the finished video {self._partial.name} into place ({exc.strerror or exc})",
                              path=self.path, fix="move it by hand; check the folder's permissions") from None
