"""Sources OpenCV's ``VideoCapture`` reads: video files, V4L2 cameras, RTSP streams, Jetson CSI cameras, GStreamer pipelines.

One reader class; the factories at the bottom (registered per scheme in
:mod:`edgedl.sources.registry`) say how each kind of source is opened: which backend, which
target, which capture properties, and what to tell the user when it will not open.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import cv2

from edgedl import opencv_build
from edgedl.errors import InputFileError, UsageError
from edgedl.opencv_build import NO_GSTREAMER_FIX, require_gstreamer
from edgedl.sources.gstreamer import csi_pipeline, on_jetson, rtsp_hardware_pipeline
from edgedl.sources.reader import Capture, Report
from edgedl.sources.uri import SourceSpec

log = logging.getLogger("edgedl.sources")

CSI_DEFAULTS = {"width": 1280, "height": 720, "fps": 30.0, "flip": 0}


@dataclass(frozen=True)
class Backend:
    """One way to open a source: an OpenCV capture API, its target and open-time parameters."""

    name: str
    target: str | int
    api: int
    params: tuple[int, ...] = ()


class OpenCVReader:
    """``cv2.VideoCapture`` as a :class:`~edgedl.sources.reader.FrameReader`.

    ``backends`` are tried in order (the first that opens is used); ``settings`` are capture
    properties set after opening (a camera's size, rate and pixel format); ``fix`` is the
    advice given when none opens.
    """

    def __init__(self, uri: str, backends: list[Backend], *, live: bool, reconnectable: bool,
                 settings: tuple[tuple[int, float], ...] = (), fix: str) -> None:
        self.uri, self.backends, self.settings, self.fix = uri, backends, settings, fix
        self.live, self.reconnectable = live, reconnectable
        self._capture: cv2.VideoCapture | None = None
        self._backend_name = backends[0].name

    def open(self, report: Report) -> None:
        """Open with the first backend that works, then apply the settings."""
        for backend in self.backends:
            capture = cv2.VideoCapture(backend.target, backend.api, list(backend.params))
            if capture.isOpened():
                self._capture, self._backend_name = capture, capture.getBackendName()
                break
            capture.release()
            log.info("%s: %s could not open it", self.uri, backend.name)
        else:
            tried = ", ".join(backend.name for backend in self.backends)
            raise InputFileError(f"{self.uri}: OpenCV could not open it ({tried})", fix=self.fix)
        for prop, value in self.settings:
            self._capture.set(prop, value)

    def read(self) -> Capture | None:
        """The next decoded frame as BGR, or ``None`` when OpenCV reports none."""
        if self._capture is None:
            return None
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        if image.ndim == 2:  # some pipelines and cameras give grey frames
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return Capture(image)

    def close(self) -> None:
        """Release the capture (the file, device or connection)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def describe(self) -> str:
        """The URI and the OpenCV backend reading it."""
        return f"{self.uri} via OpenCV {self._backend_name}"


def file_reader(spec: SourceSpec) -> OpenCVReader:
    """A video file, decoded as fast as it is read."""
    spec.accept((), " (a file plays at its own size and rate; preprocessing resizes frames for the model)")
    return OpenCVReader(spec.uri, [Backend("CAP_ANY", spec.target, cv2.CAP_ANY)], live=False, reconnectable=False,
                        fix="check it is a video OpenCV can decode (mp4, mkv, avi, mov…); if not, re-encode it: "
                            "ffmpeg -i IN -c:v libx264 OUT.mp4")


def v4l2_reader(spec: SourceSpec) -> OpenCVReader:
    """A V4L2 camera (USB webcams and the like): ``/dev/videoN``, ``v4l2:///dev/videoN`` or the index ``N``."""
    spec.accept(("width", "height", "fps", "format"))
    _require_rate(spec)
    target = spec.target
    index = int(target) if target.isdigit() else None
    device = f"/dev/video{index}" if index is not None else target
    linux = sys.platform.startswith("linux")
    if linux and not os.path.exists(device):
        raise InputFileError(f"{spec.uri}: no camera at {device}",
                             fix="list cameras with 'ls /dev/video*' or 'v4l2-ctl --list-devices'; check the cable")
    settings: list[tuple[int, float]] = []
    if spec.option("format"):  # before the size: some drivers offer large sizes only in MJPG
        settings.append((cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*spec.option("format"))))
    for name, prop in (("width", cv2.CAP_PROP_FRAME_WIDTH), ("height", cv2.CAP_PROP_FRAME_HEIGHT),
                       ("fps", cv2.CAP_PROP_FPS)):
        if spec.option(name) is not None:
            settings.append((prop, float(spec.option(name))))
    backend = Backend("V4L2", device if index is None else index, cv2.CAP_V4L2) if linux else \
        Backend("CAP_ANY", index if index is not None else device, cv2.CAP_ANY)
    return OpenCVReader(spec.uri, [backend], live=True, reconnectable=True, settings=tuple(settings),
                        fix="check that no other program is using the camera and that your user may open it "
                            "(the 'video' group)")


def rtsp_reader(spec: SourceSpec) -> OpenCVReader:
    """An RTSP stream: the Jetson's hardware decoder through GStreamer where it can, else FFmpeg with timeouts."""
    spec.accept((), " (a network stream comes at the camera's size and rate)")
    params: tuple[int, ...] = ()
    if spec.read_timeout is not None:  # without them FFmpeg can wait on a dead connection for ever
        ms = int(spec.read_timeout * 1000)
        params = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms)
    backends = [Backend("FFmpeg", spec.target, cv2.CAP_FFMPEG, params)]
    if on_jetson():
        if opencv_build.has_gstreamer():
            backends.insert(0, Backend("GStreamer (nvv4l2decoder)", rtsp_hardware_pipeline(spec.target),
                                       cv2.CAP_GSTREAMER))
        else:
            log.warning("%s: decoding on the CPU, because this OpenCV lacks GStreamer for the Jetson's hardware "
                        "decoder; fix: %s", spec.uri, NO_GSTREAMER_FIX)
    return OpenCVReader(spec.uri, backends, live=True, reconnectable=True,
                        fix="check the address, user and password (ffplay or VLC should play it) and that the camera "
                            "is reachable")


def csi_reader(spec: SourceSpec) -> OpenCVReader:
    """A Jetson CSI camera (``csi://N``, N the sensor id) through ``nvarguscamerasrc``."""
    spec.accept(tuple(CSI_DEFAULTS))
    _require_rate(spec)
    if spec.target and not spec.target.isdigit():
        raise UsageError(f"{spec.uri}: {spec.target!r} is not a sensor id", fix="use csi://0, csi://1, …")
    require_gstreamer(spec.uri)
    size = {name: spec.option(name, default) for name, default in CSI_DEFAULTS.items()}
    pipeline = csi_pipeline(int(spec.target or 0), size["width"], size["height"], size["fps"], size["flip"])
    return OpenCVReader(spec.uri, [Backend("GStreamer (nvarguscamerasrc)", pipeline, cv2.CAP_GSTREAMER)], live=True,
                        reconnectable=True, fix="check the ribbon cable and that nvargus-daemon runs "
                                                "(sudo systemctl restart nvargus-daemon)")


def gst_reader(spec: SourceSpec) -> OpenCVReader:
    """Any GStreamer pipeline that ends in ``appsink`` (``gst://…``)."""
    spec.accept((), " (set size and rate with caps in the pipeline)")
    last = spec.target.rsplit("!", 1)[-1].split()
    if not last or last[0] != "appsink":
        raise UsageError(f"{spec.uri}: the pipeline must end in appsink",
                         fix="end it with '! videoconvert ! video/x-raw,format=BGR ! appsink'")
    require_gstreamer(spec.uri)
    live = spec.target.split()[0] not in ("filesrc", "multifilesrc")
    return OpenCVReader(spec.uri, [Backend("GStreamer", spec.target, cv2.CAP_GSTREAMER)], live=live,
                        reconnectable=live, fix="try the pipeline with gst-launch-1.0 (fakesink for appsink) to see "
                                                "GStreamer's own error")


def _require_rate(spec: SourceSpec) -> None:
    if spec.option("fps") == 0:
        raise UsageError(f"{spec.uri}: fps=0 means 'unpaced', which a camera cannot be", fix="give the rate the camera "
                         "should deliver, or leave fps out for its default")
