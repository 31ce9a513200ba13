"""Display sink: ``display`` or ``display://TITLE`` — an OpenCV window, where a display and a GUI backend exist.

Pressing q or Esc in the window (or closing it) sets ``stop_requested``, which ends a pipeline run.
The window is created by the first ``write``, in the thread that writes: GUI toolkits want the
thread that owns a window to be the one that draws into it and pumps its events. With OpenCV's Qt
backend (desktop Linux packages; JetPack's OpenCV uses GTK) that holds for the whole process:
after one thread has shown a window, a window used from another thread hangs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import ClassVar

import cv2

from edgedl.errors import UsageError
from edgedl.opencv_build import has_gui
from edgedl.results import Result
from edgedl.sinks.base import FrameRenderer, Sink, SinkTarget

_FIX = "write a video instead: --sink out.mp4"
_STOP_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc


def display_problem() -> str | None:
    """Why no window can open here, or ``None`` when one can."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display here ($DISPLAY and $WAYLAND_DISPLAY are unset)"
    if not has_gui():
        return "no display here (this OpenCV has no GUI backend, as in opencv-python-headless)"
    return None


class DisplaySink(Sink):
    """Annotated frames in a window titled by the URI (``display://front door``), ``edgedl`` by default."""

    schemes: ClassVar[tuple[str, ...]] = ("display",)
    pictures: ClassVar[bool] = True

    def __init__(self, target: SinkTarget, *, fps: float, overlay: bool, overwrite: bool) -> None:
        super().__init__(target)
        problem = display_problem()
        if problem is not None:
            raise UsageError(f"{target.uri}: {problem}", fix=_FIX)
        self.title = target.location or "edgedl"
        self._render = FrameRenderer(overlay)
        self._owner: int | None = None  # the thread that created the window
        self._seen_visible = False

    def _write(self, result: Result) -> None:
        if self.stop_requested:
            return  # the user pressed q or closed the window: show nothing more (imshow would open it again)
        if self._owner is None:
            try:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            except cv2.error:
                raise UsageError(f"{self.uri}: no display here (OpenCV could not open a window)", fix=_FIX) from None
            self._owner = threading.get_ident()
        cv2.imshow(self.title, self._render(result))
        if cv2.waitKey(1) & 0xFF in _STOP_KEYS:
            self.stop_requested = True
            self._destroy()
            return
        # A window reads as invisible for a moment after it is created; only a window that was seen and is gone was closed.
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1:
            self._seen_visible = True
        elif self._seen_visible:
            self.stop_requested = True

    def _destroy(self) -> None:
        with contextlib.suppress(cv2.error):  # the user may have closed it already
            cv2.destroyWindow(self.title)
        cv2.waitKey(1)  # let the toolkit process the close

    def _finish(self) -> None:
        # Only the thread that made the window may touch it: with Qt, waitKey from another thread hangs.
        # Closed from elsewhere (a pipeline closes its sinks from the app's thread), the window stays
        # until the process exits.
        if self._owner == threading.get_ident() and not self.stop_requested:
            self._destroy()
