"""An image folder or a glob pattern as a source: the images in name order, each frame named after its file."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path

from edgedl.errors import InputFileError
from edgedl.images import IMAGE_SUFFIXES, decode_bgr, read_bytes
from edgedl.sources.reader import Capture, Report
from edgedl.sources.uri import SourceSpec

#: What a folder source picks up (a glob picks up whatever it matches).


class FolderReader:
    """The images of a folder (by suffix) or of a glob pattern, sorted by name; unreadable files are skipped and reported."""

    live = False
    reconnectable = False

    def __init__(self, spec: SourceSpec) -> None:
        spec.accept((), " (images come at their own size; preprocessing resizes them for the model)")
        self.uri, self.pattern = spec.uri, spec.target
        self.count = 0
        self._files: Iterator[Path] = iter(())
        self._report: Report | None = None

    def open(self, report: Report) -> None:
        """List the images; an empty folder or a pattern that matches nothing is an :class:`InputFileError`."""
        folder = Path(self.pattern)
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            problem = f"no images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}…) in this folder"
        else:
            files = sorted(Path(p) for p in glob.glob(self.pattern, recursive=True) if Path(p).is_file())
            problem = "no files match this pattern"
        if not files:
            raise InputFileError(f"{self.uri}: {problem}", fix="point it at a folder of images or a pattern such as "
                                                               "'photos/*.jpg'")
        self.count = len(files)
        self._files = iter(files)
        self._report = report

    def read(self) -> Capture | None:
        """The next image that decodes, as calibration decodes it (:func:`edgedl.images.decode_bgr`); ``None`` after the last."""
        for path in self._files:
            try:
                image = decode_bgr(read_bytes(path))
            except OSError as exc:
                problem = f"cannot read it ({exc.strerror or exc})"
            else:
                if image is not None:
                    return Capture(image, name=str(path))
                problem = "OpenCV cannot decode it as an image"
            if self._report is not None:
                self._report("skipped", f"{path}: {problem}; skipped")
        return None

    def close(self) -> None:
        """Forget the remaining files."""
        self._files = iter(())

    def describe(self) -> str:
        """The folder or pattern and how many files it holds."""
        return f"{self.pattern} ({self.count} files)"
