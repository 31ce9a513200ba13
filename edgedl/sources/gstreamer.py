"""GStreamer through OpenCV: whether this OpenCV has it, and the pipelines edgedl builds for Jetson sources.

The opencv-python wheels on PyPI are built without GStreamer; JetPack's system OpenCV has it,
and with it the Jetson's hardware camera path (``nvarguscamerasrc``) and hardware decoder
(``nvv4l2decoder``).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path

from edgedl.errors import MissingDependencyError

#: The end of every pipeline: BGR frames into OpenCV, never a backlog (a late reader gets the newest buffer).
APPSINK = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
NO_GSTREAMER_FIX = ("on a Jetson use JetPack's OpenCV: create the venv with --system-site-packages and run "
                    "'pip uninstall opencv-python-headless opencv-python' in it; elsewhere build OpenCV with "
                    "-D WITH_GSTREAMER=ON")


@functools.cache
def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (its build information says ``GStreamer: YES``)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False


def require_gstreamer(uri: str) -> None:
    """Raise :class:`MissingDependencyError`, with the fix, when OpenCV lacks GStreamer."""
    if not gstreamer_available():
        import cv2

        raise MissingDependencyError(f"{uri}: needs OpenCV built with GStreamer, and this OpenCV ({cv2.__version__}) has "
                                     "none (the opencv-python wheels are built without it)", fix=NO_GSTREAMER_FIX)


def on_jetson() -> bool:
    """Whether this is an NVIDIA Jetson (L4T writes its release file)."""
    return Path("/etc/nv_tegra_release").exists()


def framerate(fps: float) -> str:
    """A GStreamer fraction for ``fps``: ``30/1``, ``15/2``, and the NTSC rates as they are meant (29.97 → ``30000/1001``)."""
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 0.005 < abs(fps - ntsc):
        return f"{ntsc * 1000}/1001"
    rate = Fraction(fps).limit_denominator(1001)
    return f"{rate.numerator}/{rate.denominator}"


def csi_pipeline(sensor: int, width: int, height: int, fps: float, flip: int) -> str:
    """A Jetson CSI camera through the ISP (``nvarguscamerasrc``), scaled and flipped by ``nvvidconv``, as BGR."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! "
            f"video/x-raw(memory:NVMM),width={width},height={height},framerate={framerate(fps)},format=NV12 ! "
            f"nvvidconv flip-method={flip} ! video/x-raw,format=BGRx ! {APPSINK}")


def rtsp_hardware_pipeline(uri: str, latency_ms: int = 200) -> str:
    """An H.264 RTSP stream decoded by the Jetson's hardware decoder (``nvv4l2decoder``), as BGR."""
    location = uri.replace('"', "%22")
    return (f'rtspsrc location="{location}" latency={latency_ms} ! rtph264depay ! h264parse ! nvv4l2decoder ! '
            f"nvvidconv ! video/x-raw,format=BGRx ! {APPSINK}")
