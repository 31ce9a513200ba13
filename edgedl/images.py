"""Image files decoded into the 8-bit BGR frames every image model's preprocessing starts from.

Calibration and the image-folder source both decode here, so a photo calibrates exactly as it streams.
The pixels are what OpenCV's ``IMREAD_COLOR`` makes of the file, by construction rather than by imitation:
it applies the EXIF orientation, repeats grey into three channels, drops alpha (the stored colour stays, it is
not composited over any background) and scales deeper samples to 8 bits by each codec's own rule (PNG keeps
the high byte, colour TIFF rounds), none of which an ``IMREAD_UNCHANGED`` decode does. :func:`stored_form`
says what the file held before that conversion; it costs a second decode, so only calibration asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: File extensions OpenCV decodes: what calibration folders and image-folder sources pick up.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2", ".pbm",
                            ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr", ".pic", ".pfm"})


@dataclass(frozen=True)
class StoredForm:
    """How an image file stores its pixels: channels (1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha) and type."""

    channels: int
    dtype: np.dtype

    @property
    def is_float(self) -> bool:
        """Float samples (HDR: .hdr, .pfm, float TIFF), which have no one 8-bit meaning."""
        return self.dtype.kind == "f"

    def conversions(self) -> tuple[str, ...]:
        """What ``IMREAD_COLOR`` changes to make this 8-bit BGR: "grayscale", "with alpha", "16-bit"; none for BGR8."""
        changes = []
        if self.channels in (1, 2):
            changes.append("grayscale")
        if self.channels in (2, 4):
            changes.append("with alpha")
        if self.dtype.itemsize > 1:
            changes.append(f"{8 * self.dtype.itemsize}-bit" + (" float" if self.is_float else ""))
        return tuple(changes)


def read_bytes(path: Path) -> np.ndarray:
    """The file's bytes, ready for :func:`decode_bgr` and :func:`stored_form`; ``OSError`` if it cannot be read.

    Reading the bytes ourselves (rather than ``cv2.imread``) handles any path the OS does and reads the file once
    for both decodes.
    """
    return np.fromfile(str(path), dtype=np.uint8)


def _decode(data: np.ndarray, flags: int) -> np.ndarray | None:
    if not data.size:
        return None  # OpenCV asserts on an empty buffer instead of answering None
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:  # some codecs reject damaged bytes by assertion rather than by returning nothing
        return None


def decode_bgr(data: np.ndarray) -> np.ndarray | None:
    """An encoded image as the ``H x W x 3`` BGR ``uint8`` frame ``IMREAD_COLOR`` gives; ``None`` if it will not decode."""
    return _decode(data, cv2.IMREAD_COLOR)


def stored_form(data: np.ndarray) -> StoredForm | None:
    """What an encoded image holds before :func:`decode_bgr` converts it; ``None`` if it will not decode."""
    raw = _decode(data, cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    return StoredForm(1 if raw.ndim == 2 else raw.shape[2], raw.dtype)
