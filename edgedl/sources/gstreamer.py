"""The GStreamer pipelines edgedl builds for Jetson sources: the hardware camera path (``nvarguscamerasrc``)
and hardware decoder (``nvv4l2decoder``).

Whether this OpenCV has GStreamer at all is :mod:`edgedl.opencv_build`'s to say.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

#: The end of every pipeline: BGR frames into OpenCV, never a backlog (a late reader gets the newest buffer).
APPSINK = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"


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
