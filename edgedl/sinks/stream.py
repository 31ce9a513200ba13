"""Network video out through GStreamer: ``rtsp://server:8554/path``, ``rtp://host:port``, ``gst://appsrc ! …``.

``rtsp://`` pushes H.264 to an RTSP server that accepts publishing (``rtspclientsink``, for example into
MediaMTX), ``rtp://`` sends RTP/H.264 over UDP (``udpsink``), and ``gst://`` takes a whole pipeline
that starts with ``appsrc``. Frames enter through OpenCV's GStreamer writer, so this needs an OpenCV
built with GStreamer: JetPack's has it, the opencv-python wheels do not. On a Jetson the hardware
encoder (``nvv4l2h264enc``) is used when GStreamer has it, ``x264enc`` otherwise.
"""

from __future__ import annotations

import socket
from typing import ClassVar
from urllib.parse import urlsplit

import cv2

from edgedl.errors import OutputError, UsageError
from edgedl.opencv_build import gst_element_exists, require_gstreamer
from edgedl.sinks.base import SinkTarget, VideoWriterSink

BITRATE_KBPS = 4000
_RTSP_PORT = 554  # the scheme's default


def h264_encoder(fps: float, bitrate_kbps: int = BITRATE_KBPS) -> str:
    """The pipeline fragment from raw BGR frames to an H.264 byte stream, on the hardware encoder where there is one."""
    keyframe_every = max(1, round(fps))  # a key frame a second: a viewer who joins late waits at most that long
    if gst_element_exists("nvv4l2h264enc"):
        # nvvidconv moves the frame into NVMM memory for the encoder; it does not take 3-byte BGR, hence BGRx first.
        return (f"videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
                f"nvv4l2h264enc bitrate={bitrate_kbps * 1000} iframeinterval={keyframe_every} insert-sps-pps=true ! "
                f"h264parse")
    return (f"videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
            f"bitrate={bitrate_kbps} key-int-max={keyframe_every} ! video/x-h264,profile=baseline ! h264parse")


def _checked_end(target: SinkTarget) -> str:
    """For ``gst://`` the whole pipeline, else the elements after the encoder; a malformed URI is a UsageError."""
    if target.scheme == "gst":
        pipeline = target.location.strip()
        if pipeline.split("!", 1)[0].split(maxsplit=1)[:1] != ["appsrc"]:
            raise UsageError(f"{target.uri}: a gst:// sink pipeline must start with appsrc (where frames go in)",
                             fix="for example gst://appsrc ! videoconvert ! x264enc ! matroskamux ! filesink location=out.mkv")
        return pipeline
    parts = urlsplit(target.uri)
    try:
        port, valid = parts.port, bool(parts.hostname)
    except ValueError:  # a port that is not a number, or out of range
        port, valid = None, False
    if target.scheme == "rtsp":
        if not valid:
            raise UsageError(f"{target.uri}: an RTSP sink needs a server address (host, optional port)",
                             fix="for example rtsp://localhost:8554/edgedl")
        return f"rtspclientsink location={target.uri}"
    if not valid or port is None:
        raise UsageError(f"{target.uri}: an RTP sink needs a host and a port", fix="for example rtp://192.168.1.20:5000")
    return f"rtph264pay config-interval=1 pt=96 ! udpsink host={parts.hostname} port={port} sync=false"


def check_rtsp_server(uri: str, timeout_s: float = 3.0) -> None:
    """Refuse an RTSP server that does not answer on its port.

    rtspclientsink connects after OpenCV has reported the writer open, and a refused connection then
    only shows as frames silently going nowhere; a plain TCP connect first turns that into an error.
    """
    parts = urlsplit(uri)
    try:
        socket.create_connection((parts.hostname, parts.port or _RTSP_PORT), timeout=timeout_s).close()
    except OSError as exc:
        raise OutputError(f"{uri}: cannot reach the RTSP server ({exc.strerror or exc})",
                          fix="start the server (one that accepts publishing, such as MediaMTX) or correct the address") from None


def _compose(target: SinkTarget, end: str, fps: float) -> str:
    if target.scheme == "gst":
        return end
    # A leaky queue lets the encoder fall behind by dropping frames rather than stalling the inference pipeline.
    return f"appsrc ! queue max-size-buffers=4 leaky=downstream ! {h264_encoder(fps)} ! {end}"


def pipeline_for(target: SinkTarget, fps: float) -> str:
    """The GStreamer pipeline a stream sink opens for ``target`` (UsageError for a malformed URI)."""
    return _compose(target, _checked_end(target), fps)


class StreamSink(VideoWriterSink):
    """Annotated frames out as a live H.264 stream, at the first frame's size (later frames are resized to it)."""

    schemes: ClassVar[tuple[str, ...]] = ("rtsp", "rtp", "gst")

    def __init__(self, target: SinkTarget, *, fps: float, overlay: bool, overwrite: bool) -> None:
        super().__init__(target, overlay)
        end = _checked_end(target)  # a malformed URI is the first thing to hear about, before missing libraries
        require_gstreamer(target.uri)
        if target.scheme == "rtsp":
            check_rtsp_server(target.uri)
        self.fps = fps
        self.pipeline = _compose(target, end, fps)

    def _open_writer(self, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(self.pipeline, cv2.CAP_GSTREAMER, 0, self.fps, size, True)
        if not writer.isOpened():
            raise OutputError(f"{self.uri}: GStreamer could not start the pipeline '{self.pipeline}'",
                              fix="check that the receiver or server is up; run the pipeline with gst-launch-1.0, "
                                  "videotestsrc in place of appsrc, to see why")
        return writer  # release() at close sends end-of-stream, so the receiver sees the stream end cleanly
