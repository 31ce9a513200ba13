"""What this OpenCV was built with (GStreamer, a GUI, its video backends), read once from ``cv2.getBuildInformation()``.

The opencv-python wheels on PyPI are built without GStreamer and (the headless ones) without a GUI;
JetPack's system OpenCV has both, and through GStreamer the Jetson's hardware camera path and codecs.
Sources, sinks and ``edgedl doctor`` all ask here, so they agree on the answer and on the fix.

cv2 is imported inside the functions: ``import edgedl`` must not load it.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

from edgedl.errors import MissingDependencyError

NO_GSTREAMER_FIX = ("on a Jetson use JetPack's OpenCV: make the venv with --system-site-packages and run "
                    "'pip uninstall opencv-python opencv-python-headless' in it (the opencv-python wheels lack GStreamer); "
                    "elsewhere build OpenCV with -D WITH_GSTREAMER=ON")
#: The video I/O entries ``edgedl doctor`` reports, in the order OpenCV lists them.
VIDEO_BACKENDS = ("FFMPEG", "GStreamer", "v4l/v4l2")
_TOOLKITS = ("GTK", "QT", "WIN32", "COCOA", "WAYLAND", "FRAMEBUFFER")
_GST_INSPECT_TIMEOUT_S = 15.0  # a first run rebuilds GStreamer's plugin registry, which takes seconds on a Jetson

Section = tuple[str, list[tuple[str, str]]]


@functools.cache
def _build_information() -> str:
    import cv2

    return cv2.getBuildInformation()


def build_section(name: str, build_info: str | None = None) -> Section | None:
    """One entry of the build information (this OpenCV's unless ``build_info`` is given), ``None`` when absent.

    Returns the entry's value and the ``(name, value)`` lines nested under it. OpenCV 4.5+ puts the
    answer on the entry's own line (``GUI: GTK3``, ``GStreamer: YES (1.20.3)``); older builds, such as
    JetPack 4's OpenCV 4.1, leave it empty and list parts beneath (``GStreamer:`` then ``base: YES (ver 1.14.5)``).
    """
    lines = (_build_information() if build_info is None else build_info).splitlines()
    for i, line in enumerate(lines):
        key, _, value = line.strip().partition(":")
        if key.strip() != name:
            continue
        indent = len(line) - len(line.lstrip())
        nested = []
        for sub in lines[i + 1:]:
            if not sub.strip() or len(sub) - len(sub.lstrip()) <= indent:
                break
            sub_key, _, sub_value = sub.strip().partition(":")
            nested.append((sub_key.strip(), sub_value.strip()))
        return value.strip(), nested
    return None


def _says_yes(section: Section) -> bool:
    """An entry is on when its value says YES, or, in the old format with no value, when a part beneath does."""
    value, nested = section
    if value:
        return value.upper().startswith("YES")
    return any(state.upper().startswith("YES") for _, state in nested)


def has_gstreamer(build_info: str | None = None) -> bool:
    """Whether this OpenCV (or the one ``build_info`` describes) was built with GStreamer."""
    section = build_section("GStreamer", build_info)
    return section is not None and _says_yes(section)


def has_gui(build_info: str | None = None) -> bool:
    """Whether this OpenCV has a window backend (opencv-python-headless has none)."""
    section = build_section("GUI", build_info)
    if section is None:
        return False
    value, nested = section
    if value:
        return value.upper() != "NONE"
    return any(any(toolkit in name.upper() for toolkit in _TOOLKITS) and state.upper().startswith("YES")
               for name, state in nested)


def video_backends(build_info: str | None = None) -> dict[str, bool]:
    """``{"FFMPEG": True, "GStreamer": False, "v4l/v4l2": True}``: each of :data:`VIDEO_BACKENDS` the build information lists."""
    sections = {name: build_section(name, build_info) for name in VIDEO_BACKENDS}
    return {name: _says_yes(section) for name, section in sections.items() if section is not None}


def require_gstreamer(what: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``what`` (a URI) and the fix when this OpenCV lacks GStreamer."""
    if not has_gstreamer():
        import cv2

        raise MissingDependencyError(f"{what}: needs OpenCV built with GStreamer, and this OpenCV ({cv2.__version__}) "
                                     "was built without it", fix=NO_GSTREAMER_FIX)


@functools.cache
def gst_element_exists(name: str) -> bool:
    """Whether GStreamer has element ``name`` (asks ``gst-inspect-1.0``; False when that tool is missing or hangs)."""
    tool = shutil.which("gst-inspect-1.0")
    if tool is None:
        return False
    try:
        return subprocess.run([tool, "--exists", name], capture_output=True, timeout=_GST_INSPECT_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
