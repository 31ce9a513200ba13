"""Stale-frame detection: a frozen camera or decoder keeps returning the identical frame and reporting success."""

from __future__ import annotations

import numpy as np

#: Samples per axis compared between frames: a few thousand bytes instead of the whole image.
GRID = 64


class StaleCheck:
    """Notices when consecutive frames stay identical for longer than ``limit`` seconds (``None``: never).

    Frames are compared on a strided grid of pixels, so the check costs microseconds. A live
    sensor's noise changes every pixel from frame to frame; a grid that matches exactly, frame
    after frame, is a repeated buffer.
    """

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self._last: np.ndarray | None = None
        self._since = 0.0
        self._reported = False

    def update(self, image: np.ndarray, timestamp: float) -> bool:
        """Record a frame captured at ``timestamp``; ``True`` once per frozen run, when it passes the limit."""
        if self.limit is None:
            return False
        h, w = image.shape[:2]
        sample = np.ascontiguousarray(image[:: max(1, h // GRID), :: max(1, w // GRID)])
        if self._last is None or not np.array_equal(sample, self._last):
            self._last, self._since, self._reported = sample, timestamp, False
            return False
        if self._reported or timestamp - self._since <= self.limit:
            return False
        self._reported = True
        return True

    def reset(self) -> None:
        """Forget the last frame (a new device was opened)."""
        self._last = None
        self._reported = False
