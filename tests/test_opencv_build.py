"""edgedl.opencv_build: what OpenCV was built with, read from recorded ``cv2.getBuildInformation()`` snippets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgedl import opencv_build
from edgedl.errors import MissingDependencyError

#: opencv-python-headless 5.0 from PyPI: answers on the entries' own lines, no GUI, no GStreamer.
PIP_WHEEL = """\
  GUI:                           NONE
    VTK support:                 NO
    Built-in Unicode font:       YES

  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (62.28.101)
      avformat:                  YES (62.12.101)
    GStreamer:                   NO
    v4l/v4l2:                    YES (linux/videodev2.h)
    Orbbec:                      NO
"""
#: JetPack 6's OpenCV 4.8: the same layout, with GTK and GStreamer.
JETPACK6 = """\
  GUI:                           GTK3
    GTK+:                        YES (ver 3.24.33)
    VTK support:                 NO

  Video I/O:
    FFMPEG:                      YES
    GStreamer:                   YES (1.20.3)
    v4l/v4l2:                    YES (linux/videodev2.h)
"""
#: JetPack 4's OpenCV 4.1: GUI and GStreamer have no value of their own, only parts listed beneath.
JETPACK4 = """\
  GUI:
    GTK+:                        YES (ver 3.22.30)
      GThread :                  YES (ver 2.56.4)
      GtkGlExt:                  NO

  Video I/O:
    FFMPEG:                      YES
      avcodec:                   YES (ver 57.107.100)
    GStreamer:
      base:                      YES (ver 1.14.5)
      app:                       YES (ver 1.14.5)
    v4l/v4l2:                    linux/videodev2.h
"""
#: An old-style build without a window toolkit; the YES under the next section must not count.
OLD_HEADLESS = """\
  GUI:
    GTK+ 2.x:                    NO
    VTK support:                 NO

  Media I/O:
    PNG:                         YES
  Video I/O:
    GStreamer:                   NO
"""


@pytest.mark.parametrize(("info", "gui", "gstreamer", "backends"), [
    (PIP_WHEEL, False, False, {"FFMPEG": True, "GStreamer": False, "v4l/v4l2": True}),
    (JETPACK6, True, True, {"FFMPEG": True, "GStreamer": True, "v4l/v4l2": True}),
    (JETPACK4, True, True, {"FFMPEG": True, "GStreamer": True, "v4l/v4l2": False}),
    (OLD_HEADLESS, False, False, {"GStreamer": False}),
    ("  Video I/O:\n    FFMPEG: YES\n", False, False, {"FFMPEG": True}),
])
def test_gui_gstreamer_and_video_backends_in_new_and_old_formats(info: str, gui: bool, gstreamer: bool,
                                                                  backends: dict[str, bool]) -> None:
    assert opencv_build.has_gui(info) is gui
    assert opencv_build.has_gstreamer(info) is gstreamer
    assert opencv_build.video_backends(info) == backends
    assert list(opencv_build.video_backends(info)) == list(backends)  # the doctor lists them in OpenCV's order


def test_a_section_is_its_value_and_the_lines_indented_beneath_it() -> None:
    assert opencv_build.build_section("FFMPEG", JETPACK4) == ("YES", [("avcodec", "YES (ver 57.107.100)")])
    assert opencv_build.build_section("GStreamer", JETPACK4) == ("", [("base", "YES (ver 1.14.5)"),
                                                                      ("app", "YES (ver 1.14.5)")])
    assert opencv_build.build_section("GStreamer", PIP_WHEEL) == ("NO", [])
    assert opencv_build.build_section("CUDA", PIP_WHEEL) is None


def test_require_gstreamer_names_the_uri_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opencv_build, "has_gstreamer", lambda: False)
    with pytest.raises(MissingDependencyError) as caught:
        opencv_build.require_gstreamer("csi://0")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("csi://0: needs OpenCV built with GStreamer")
    assert "--system-site-packages" in message and "WITH_GSTREAMER=ON" in message and caught.value.exit_code == 9
    monkeypatch.setattr(opencv_build, "has_gstreamer", lambda: True)
    opencv_build.require_gstreamer("csi://0")


def _stub_gst_inspect(folder: Path, body: str) -> None:
    tool = folder / "gst-inspect-1.0"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)


def test_gst_element_exists_asks_gst_inspect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sleep = shutil.which("sleep")  # found before PATH holds only the stub's folder
    monkeypatch.setenv("PATH", str(tmp_path))
    check = opencv_build.gst_element_exists.__wrapped__  # uncached: each case below has its own tool
    assert not check("x264enc")  # no gst-inspect-1.0 at all
    _stub_gst_inspect(tmp_path, '[ "$1" = --exists ] && [ "$2" = x264enc ]')
    assert check("x264enc") and not check("nvv4l2h264enc")
    _stub_gst_inspect(tmp_path, f"exec {sleep} 5")
    monkeypatch.setattr(opencv_build, "_GST_INSPECT_TIMEOUT_S", 0.2)
    assert not check("x264enc")  # a hung tool is a missing element, not a hung sink


def test_importing_the_module_does_not_load_cv2() -> None:
    code = "import sys, edgedl.opencv_build; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.strip() == "False"
