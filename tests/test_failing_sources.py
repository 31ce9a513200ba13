"""Failing sources through the whole pipeline, and `edgedl run` stopped by a signal.

A scripted camera (tests/fake_sources.py) stalls, goes dark, freezes, raises, drops out and comes
back, or changes size, while the real pipeline (capture, preprocessing, ONNX Runtime,
postprocessing, sinks) runs on it; so does a real RTSP camera served from this process (MJPEG over
RTP, read by OpenCV's FFmpeg client); a real video file ends early; ``edgedl run`` gets SIGINT or
SIGTERM. Each time: the events say what happened, reconnection backs off within its cap, results
stay in frame order, every frame captured is processed or counted as dropped, sinks are finalized,
and threads and file descriptors go back to where they were before the stream.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import soak
from child_processes import child_process
from fake_sources import FROZEN, HANG, NONE, RAISE, REFUSE, FakeDevice, frames
from tiny import tiny_classifier

import edgedl
from edgedl.errors import InputFileError
from edgedl.pipeline import Pipeline
from edgedl.pipeline_stats import PipelineStats
from edgedl.results import Result, SourceEvent
from edgedl.sources.stream import MAX_STUCK_READS

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors through /proc")

CAP_S = 0.08  # the longest reconnection delay in these tests
FAST = {"read_timeout": 0.3, "backoff": (0.02, CAP_S), "policy": "block"}  # block: no frame dropped, so ids are exact
FILE = {"live": False, "reconnectable": False}  # a fake that fails like a file: the stream ends instead of reconnecting
RETRIES = 4
GIVE_UP = ["disconnected", *["reconnecting"] * RETRIES, "gave-up"]  # the last script runs out; every reopen is refused


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16x16 four-class classifier as an FP32 bundle."""
    folder = tmp_path_factory.mktemp("failing")
    onnx_path = tiny_classifier(folder / "tiny.onnx", batch=1, size=16)
    return edgedl.convert(onnx_path, folder / "tiny.edgedl", preprocess={"preset": "raw01"}, labels=list("abcd"),
                          task="classify").path


@pytest.fixture
def model(classifier: Path) -> Iterator[edgedl.Model]:
    with edgedl.load(classifier, backend="onnxruntime") as loaded:
        _stream(loaded, "synthetic://shapes?width=64&height=48&fps=0&frames=3")  # first-use pools and caches
        yield loaded


@dataclass
class Run:
    """What the app saw of one stream."""

    results: list[Result]
    events: list[SourceEvent]
    stats: PipelineStats
    seconds: float

    @property
    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    @property
    def ids(self) -> list[int]:
        return [result.frame_id for result in self.results]


def _stream(model: edgedl.Model, source: object, limit: float = 10.0, **options: object) -> Run:
    """Stream ``source`` to its end through the whole pipeline; a stream still running after ``limit`` seconds fails."""
    results: list[Result] = []
    events: list[SourceEvent] = []
    pipeline = Pipeline(model, source, on_result=results.append, on_event=events.append, **options)
    started = time.monotonic()
    pipeline.start()
    ended = pipeline.join(timeout=limit)
    if not ended:
        pipeline.stop()
    assert ended, f"{source} was still streaming after {limit} s"
    return Run(results, events, pipeline.stats, time.monotonic() - started)


def _device(devices: list[FakeDevice], *scripts: object, **kwargs: bool) -> FakeDevice:
    device = FakeDevice(*scripts, **kwargs)
    devices.append(device)
    return device


def _delays(events: list[SourceEvent]) -> list[float]:
    """The delay each 'reconnecting' event announced (``attempt N in D s (after …)``)."""
    return [float(e.message.split(" in ")[1].split()[0]) for e in events if e.kind == "reconnecting"]


def _check_backoff(events: list[SourceEvent], backoff: tuple[float, float] = (0.02, CAP_S), slack: float = 1.0) -> None:
    """Each delay doubles the one before up to the cap (starting again after a recovery), and is what was waited
    (plus at most ``slack`` seconds to open the source)."""
    first, cap = backoff
    delays = _delays(events)
    assert all(d == first or d == min(cap, 2 * before) for before, d in zip([0.0, *delays], delays, strict=False))
    waits = [(e, after) for e, after in zip(events, events[1:], strict=False) if e.kind == "reconnecting"]
    for (event, after), delay in zip(waits, delays, strict=True):
        assert delay <= after.timestamp - event.timestamp < delay + slack


FAULTS = {
    "stall": ([frames(3) + [HANG], frames(3)], {}, ["opened", "stalled", "reconnecting", "reconnected", *GIVE_UP]),
    "read returns no frame": ([frames(3) + [NONE], frames(3)], {},
                              ["opened", "disconnected", "reconnecting", "reconnected", *GIVE_UP]),
    "the same frame forever": ([frames(3) + [FROZEN], frames(3)], {},
                               ["opened", "stale", "reconnecting", "reconnected", *GIVE_UP]),
    "read raises": ([frames(3) + [RAISE], frames(3)], {}, ["opened", "disconnected", "reconnecting", "reconnected",
                                                          *GIVE_UP]),
    "unplugged, back after four tries": ([frames(3) + [NONE], REFUSE, REFUSE, REFUSE, frames(3)], {},
                                         ["opened", "disconnected", *["reconnecting"] * 4, "reconnected", *GIVE_UP]),
    "resolution change": ([frames(3, (64, 48)) + frames(3, (96, 72))], {}, ["opened", "resized", *GIVE_UP]),
    "file stalls": ([frames(3) + [HANG]], FILE, ["opened", "stalled", "ended"]),
    "file read raises": ([frames(3) + [RAISE]], FILE, ["opened", "disconnected", "ended"]),
}


@pytest.mark.parametrize(("scripts", "kind", "expected"), FAULTS.values(), ids=FAULTS)
def test_a_failing_source_is_reported_recovered_and_leaves_nothing_behind(model: edgedl.Model, fake: list[FakeDevice],
                                                                          scripts: list, kind: dict, expected: list[str]) -> None:
    baseline = soak.threads_and_fds()
    device = _device(fake, *scripts, **kind)
    run = _stream(model, device.uri, source_options={**FAST, "max_retries": RETRIES, "stale_after": 0.15})
    assert run.kinds == expected
    assert run.ids == list(range(run.stats.captured)) and len(run.ids) >= 3  # in order, none lost across reconnections
    assert run.stats.processed == run.stats.captured and run.stats.dropped == 0
    assert all(result.classes and len(result.classes) == 4 for result in run.results)  # the model saw every frame
    _check_backoff(run.events)
    assert run.seconds < 5.0
    device.release()  # a read stuck in the device returns (as a dead connection finally does): its thread exits
    assert soak.settled(baseline) == baseline
    refused = scripts.count(REFUSE) + max(0, device.opens - len(scripts))
    assert device.closes == device.opens - refused  # every reader that opened was closed


def test_a_resolution_change_reaches_the_model_and_the_results_at_the_new_size(model: edgedl.Model,
                                                                              fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(2, (64, 48)) + frames(2, (96, 72)) + frames(2, (40, 30)), **FILE)
    run = _stream(model, device.uri)
    sizes = [(r.geometry.original_width, r.geometry.original_height) for r in run.results]
    assert sizes == [(64, 48)] * 2 + [(96, 72)] * 2 + [(40, 30)] * 2
    assert [e.message for e in run.events if e.kind == "resized"] == ["64x48 -> 96x72", "96x72 -> 40x30"]


def test_a_camera_that_fails_every_way_in_one_run_keeps_streaming_into_finished_files(model: edgedl.Model,
                                                                                      fake: list[FakeDevice],
                                                                                      tmp_path: Path) -> None:
    """Seven faults in one run: a stall, a dark read, two refused reopens, an exception, a frozen frame, a new size."""
    device = _device(fake, frames(4) + [HANG], frames(4) + [NONE], REFUSE, REFUSE, frames(4) + [RAISE],
                     frames(4) + [FROZEN], frames(4, (64, 48)) + frames(4, (96, 72)))
    video, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    baseline = soak.threads_and_fds()
    run = _stream(model, device.uri, sink=[video, lines], source_options={**FAST, "max_retries": 3, "stale_after": 0.15})
    counts = {kind: run.kinds.count(kind) for kind in set(run.kinds)}
    assert counts == {"opened": 1, "stalled": 1, "disconnected": 3, "stale": 1, "resized": 1, "reconnected": 4,
                      "reconnecting": 9, "gave-up": 1}
    assert max(_delays(run.events)) == CAP_S
    _check_backoff(run.events)
    assert run.ids == list(range(run.stats.captured)) and run.stats.dropped == 0 and len(run.ids) >= 28
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame_id"] for r in records] == run.ids
    capture = cv2.VideoCapture(str(video))
    decoded = 0
    while (frame := capture.read())[0]:
        assert frame[1].shape == (48, 64, 3)  # the video keeps its first size; later frames are resized to it
        decoded += 1
    capture.release()
    assert decoded == len(run.ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.mp4"]  # no temporary file left
    device.release()
    assert soak.settled(baseline) == baseline


def test_reads_stuck_on_every_connection_hold_a_bounded_number_of_threads(model: edgedl.Model,
                                                                          fake: list[FakeDevice]) -> None:
    """A device whose every read blocks for good: the stream keeps trying, but never piles up blocked threads."""
    device = _device(fake, frames(2) + [HANG], *[[HANG]] * 40)
    baseline = soak.threads_and_fds()
    events: list[SourceEvent] = []
    pipeline = Pipeline(model, device.uri, on_result=lambda r: None, on_event=events.append,
                        source_options={"read_timeout": 0.05, "backoff": (0.01, 0.02)})
    pipeline.start()
    most, deadline = 0, time.monotonic() + 2.0
    while time.monotonic() < deadline:
        most = max(most, threading.active_count())
        time.sleep(0.01)
    pipeline.stop()
    # Four stages and the capture thread, plus the stuck reads (the last one opened was the live worker until it stuck).
    assert most <= baseline[0] + 5 + MAX_STUCK_READS
    kinds = [e.kind for e in events]
    assert kinds.count("stalled") == MAX_STUCK_READS and kinds.count("reconnecting") > 2 * MAX_STUCK_READS
    assert "still blocked" in events[-1].message  # it keeps trying, without opening the device again
    device.release()
    assert soak.settled(baseline) == baseline


def _write_clip(path: Path, count: int, size: tuple[int, int] = (64, 48)) -> None:
    """A real MJPG video: frame ``i`` a flat grey of level ``8 + 6 i``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), 8 + 6 * i, np.uint8))
    writer.release()


def test_a_video_file_cut_short_streams_what_it_has_then_ends_and_closes(model: edgedl.Model, tmp_path: Path) -> None:
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    _write_clip(whole, 40)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # a copy that stopped half way
    baseline = soak.threads_and_fds()
    for clip, least in ((whole, 40), (cut, 5)):
        capture = cv2.VideoCapture(str(clip))
        readable = []
        while (frame := capture.read())[0]:
            readable.append(round(float(frame[1].mean())))
        capture.release()
        run = _stream(model, clip)
        assert run.kinds == ["opened", "ended"] and len(readable) >= least
        assert run.ids == list(range(len(readable))) == list(range(run.stats.processed))
        assert [round(float(r.image.mean())) for r in run.results] == readable  # in order, each frame once
        assert soak.settled(baseline) == baseline  # the decoder released the file


def test_a_video_without_its_index_is_refused_at_start_with_one_line(model: edgedl.Model, tmp_path: Path) -> None:
    clip = tmp_path / "cut.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])  # mp4 keeps its index at the end: a cut file cannot be opened
    baseline = soak.threads_and_fds()
    with pytest.raises(InputFileError) as caught:
        Pipeline(model, clip, sink=tmp_path / "out.jsonl").start()
    message = str(caught.value)
    assert "\n" not in message and str(clip) in message and "fix:" in message
    assert soak.settled(baseline) == baseline and sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]


# --------------------------------------------------------------------------- a real RTSP camera


def _jpeg_payload(image: np.ndarray) -> tuple[int, bytes, bytes]:
    """What RFC 2435 sends of a baseline JPEG: its type (1: 4:2:0, 0: 4:2:2), quantization tables and scan data."""
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    tables: dict[int, bytes] = {}
    at, kind = 2, 0
    while True:  # the segments up to the start of scan
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2 : at + 4])[0]
        body = data[at + 4 : at + 2 + length]
        if marker == 0xDB:  # quantization tables: an id byte, then 64 bytes each
            for i in range(0, len(body), 65):
                tables[body[i] & 0x0F] = body[i + 1 : i + 65]
        elif marker == 0xC0:  # frame header: luma sampled 2x2 is 4:2:0
            kind = 1 if body[7] == 0x22 else 0
        elif marker == 0xDA:
            return kind, tables[0] + tables[1], data[at + 2 + length : -2]  # the scan without its EOI
        at += 2 + length


class _RtspCamera:
    """A network camera on 127.0.0.1: RTSP, RTP over the RTSP connection, MJPEG (RFC 2435), flat grey frames.

    Frame ``n`` sent is grey level ``n % 256``, so the order frames arrive in can be checked. The
    test plays its faults: ``sending.clear()`` (the connection stays up, no frames), ``unplug()``
    (connections cut, the port refuses) and ``plug_in()``, and ``size`` (a new resolution).
    """

    PACKET = 1400  # JPEG bytes per RTP packet

    def __init__(self, fps: float = 20.0, size: tuple[int, int] = (160, 128)) -> None:
        self.fps, self.size = fps, size
        self.sending = threading.Event()
        self.sending.set()
        self.sent = 0
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.plug_in()

    def plug_in(self) -> None:
        if self._listener.fileno() < 0:
            self._listener = socket.create_server(("127.0.0.1", self.port))
        self._run(self._accept, self._listener)

    def unplug(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._listener.close()
        for conn in self._connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the session's read; it closes the socket
            except OSError:
                pass
        self._connections.clear()

    def close(self) -> None:
        self.unplug()
        self.sending.set()  # a paused sender wakes, finds its connection gone and ends
        for thread in self._threads:
            thread.join(5)

    def _run(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # unplugged
                return
            self._connections.append(conn)
            self._run(self._session, conn)

    def _session(self, conn: socket.socket) -> None:
        """Answer RTSP requests until the client leaves; PLAY starts the frames. RTCP from the client is skipped."""
        lock = threading.Lock()  # replies and frames share the connection
        reader = conn.makefile("rb")
        try:
            while first := reader.read(1):
                if first == b"$":  # an interleaved packet: channel, length, data
                    reader.read(struct.unpack(">xH", reader.read(3))[0])
                    continue
                method = (first + reader.readline()).split()[0].decode()
                headers = {}
                while line := reader.readline().strip():
                    key, _, value = line.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                reply, body = f"RTSP/1.0 200 OK\r\nCSeq: {headers.get('cseq', 0)}\r\nSession: 1\r\n", b""
                if method == "DESCRIBE":
                    body = b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\nm=video 0 RTP/AVP 26\r\na=control:track0\r\n"
                    reply += f"Content-Type: application/sdp\r\nContent-Base: {self.url}/\r\nContent-Length: {len(body)}\r\n"
                elif method == "SETUP" and "TCP" not in headers.get("transport", ""):
                    reply = reply.replace("200 OK", "461 Unsupported Transport")  # the client then asks for TCP
                elif method == "SETUP":
                    reply += "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                with lock:
                    conn.sendall(reply.encode() + b"\r\n" + body)
                if method == "PLAY":
                    self._run(self._play, conn, lock)
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    def _play(self, conn: socket.socket, lock: threading.Lock) -> None:
        """A frame every 1/fps seconds while sending is on, until the connection is gone."""
        sequence = 0
        while self.sending.wait():
            width, height = self.size
            kind, tables, scan = _jpeg_payload(np.full((height, width, 3), self.sent % 256, np.uint8))
            stamp = int(self.sent * 90_000 / self.fps) & 0xFFFFFFFF
            packets = []
            for offset in range(0, len(scan), self.PACKET):
                last = offset + self.PACKET >= len(scan)
                jpeg = struct.pack(">I4B", offset, kind, 255, width // 8, height // 8)  # Q 255: tables in band
                if offset == 0:
                    jpeg += struct.pack(">2xH", len(tables)) + tables
                rtp = struct.pack(">2BHII", 0x80, 0x80 * last | 26, sequence & 0xFFFF, stamp, 1) + jpeg
                rtp += scan[offset : offset + self.PACKET]
                packets.append(struct.pack(">cBH", b"$", 0, len(rtp)) + rtp)
                sequence += 1
            try:
                with lock:
                    conn.sendall(b"".join(packets))
            except OSError:
                return
            self.sent += 1
            time.sleep(1 / self.fps)


def test_a_network_camera_that_freezes_drops_out_and_changes_size_keeps_streaming(model: edgedl.Model) -> None:
    """A real RTSP connection through OpenCV's FFmpeg client: every fault recovered, every socket closed."""
    baseline = soak.threads_and_fds()
    camera = _RtspCamera()
    results: list[Result] = []
    events: list[SourceEvent] = []
    backoff = (0.05, 0.2)
    pipeline = Pipeline(model, camera.url, on_result=results.append, on_event=events.append,
                        source_options={"read_timeout": 0.5, "backoff": backoff})

    def wait_for(done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while not done():
            assert time.monotonic() < deadline, f"no {what}: {[str(e) for e in events]}"
            time.sleep(0.02)

    def more_frames() -> None:
        target = len(results) + 10
        wait_for(lambda: len(results) >= target, "frames")

    try:
        pipeline.start()
        more_frames()
        camera.sending.clear()  # frozen: the connection stays open, nothing comes
        wait_for(lambda: events[-1].kind == "reconnecting", "reconnection after the stall")
        camera.sending.set()
        more_frames()
        camera.unplug()  # the cable: connection cut, then the port refuses
        wait_for(lambda: [e.kind for e in events].count("reconnecting") >= 4, "reconnection attempts")
        camera.plug_in()
        more_frames()
        camera.size = (96, 64)
        more_frames()
    finally:
        pipeline.stop()
        camera.close()
    kinds = [e.kind for e in events]
    assert kinds[:2] in (["opened", "stalled"], ["opened", "disconnected"])
    assert kinds.count("reconnected") == 2 and kinds.count("resized") == 1 and "gave-up" not in kinds
    milestones = [i for i, kind in enumerate(kinds) if kind in ("reconnected", "resized")]
    assert "disconnected" in kinds[milestones[0] : milestones[1]] and milestones[1] < milestones[2] == kinds.index("resized")
    _check_backoff(events, backoff, slack=3.0)  # opening a camera that answers but sends nothing waits for its timeout
    levels = [round(float(r.image.mean())) for r in results]
    assert all(a < b for a, b in zip(levels, levels[1:], strict=False))  # the camera's frames, in the order it sent them
    assert all(a < b for a, b in zip([r.frame_id for r in results], [r.frame_id for r in results][1:], strict=False))
    assert results[-1].image.shape == (64, 96, 3) and results[0].image.shape == (128, 160, 3)
    assert soak.settled(baseline) == baseline  # every capture released its socket, every thread ended


# --------------------------------------------------------------------------- edgedl run and signals


@contextmanager
def _running(bundle: Path, folder: Path, source: str = "synthetic://shapes?width=160&height=120&fps=30",
             ) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """``edgedl run`` on a camera into a video and a JSON-lines file, once results are flowing; killed at the end."""
    video, lines = folder / "live.mp4", folder / "live.jsonl"
    with child_process([sys.executable, "-m", "edgedl.cli.main", "run", str(bundle), "--backend", "onnxruntime",
                        "--source", source, "--sink", str(video), "--sink", str(lines), "--quiet"],
                       stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as child:
        deadline = time.monotonic() + 60
        while (not lines.exists() or lines.read_text().count("\n") < 10) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield child, video, lines


def _check_finished_outputs(video: Path, lines: Path, shape: tuple[int, int, int] = (120, 160, 3)) -> None:
    """Every JSON line whole and in frame order, and a video that decodes to exactly one frame per line."""
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    ids = [r["frame_id"] for r in records]
    assert len(ids) >= 10 and all(a < b for a, b in zip(ids, ids[1:], strict=False))
    capture = cv2.VideoCapture(str(video))
    decoded = 0
    while (frame := capture.read())[0]:
        assert frame[1].shape == shape
        decoded += 1
    capture.release()
    assert decoded == len(ids)
    assert sorted(p.name for p in video.parent.iterdir()) == [lines.name, video.name]  # no temporary file left


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_run_cleanly_with_finished_outputs(classifier: Path, tmp_path: Path, signum: int) -> None:
    """Ctrl-C exits 130; SIGTERM (systemd, docker stop) is a requested stop and exits 0. Both finalize the outputs."""
    with _running(classifier, tmp_path) as (child, video, lines):
        signalled = time.monotonic()
        child.send_signal(signum)
        _, err = child.communicate(timeout=30)
    assert time.monotonic() - signalled < 5.0
    assert child.returncode == (130 if signum == signal.SIGINT else 0), err
    assert ("interrupted" if signum == signal.SIGINT else "stopped by SIGTERM") in err and "Traceback" not in err
    _check_finished_outputs(video, lines)


def test_a_second_signal_while_stopping_still_leaves_finished_outputs(classifier: Path, tmp_path: Path) -> None:
    """An impatient second Ctrl-C must not cut the video's finalization short."""
    with _running(classifier, tmp_path) as (child, video, lines):
        child.send_signal(signal.SIGINT)
        time.sleep(0.005)  # the first one is being handled: the pipeline is stopping
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    _check_finished_outputs(video, lines)


def test_sigterm_while_the_network_camera_is_silent_stops_run_promptly(classifier: Path, tmp_path: Path) -> None:
    """docker stop while the camera has gone quiet: a read blocked in FFmpeg must not hold the stop up."""
    camera = _RtspCamera()
    try:
        with _running(classifier, tmp_path, camera.url) as (child, video, lines):
            camera.sending.clear()
            time.sleep(0.6)  # the run waits in a read that gets nothing (its deadline is 5 s)
            signalled = time.monotonic()
            child.send_signal(signal.SIGTERM)
            _, err = child.communicate(timeout=30)
    finally:
        camera.close()
    assert time.monotonic() - signalled < 5.0
    assert child.returncode == 0, err
    _check_finished_outputs(video, lines, (128, 160, 3))
