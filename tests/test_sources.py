"""Frame sources: files, folders, synthetic scenes, the queue policies, and what a stream does when a device misbehaves."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from child_processes import child_process
from fake_sources import FROZEN, HANG, NONE, RAISE, REFUSE, SAME, FakeDevice, frames, make_reader

from edgedl import opencv_build
from edgedl.errors import EdgeDLError, InputFileError, MissingDependencyError, UsageError
from edgedl.results import Frame, SourceEvent
from edgedl.sources import FrameStream, gstreamer, open_source, parse_source, register_reader, registry
from edgedl.sources.frame_queue import FrameQueue
from edgedl.sources.moving_shapes import MovingShapes

FAST = {"read_timeout": 0.3, "backoff": (0.02, 0.08)}  # short deadlines and delays keep the failure tests quick


def _device(devices: list[FakeDevice], *scripts, **kwargs) -> FakeDevice:
    device = FakeDevice(*scripts, **kwargs)
    devices.append(device)
    return device


def _all(stream: FrameStream, limit: float = 5.0) -> list[Frame]:
    """Every frame until the stream ends; a stream that has not ended within ``limit`` seconds fails the test."""
    got: list[Frame] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and (frame := stream.read(timeout=max(0.0, deadline - time.monotonic()))):
        got.append(frame)
    assert stream.ended, f"{stream.uri} did not end within {limit} s"
    return got


def _drain(stream: FrameStream) -> tuple[list[Frame], list[str]]:
    """Every frame until the end, and every event kind, in order."""
    got = _all(stream)
    return got, [event.kind for event in stream.events()]


def _write_video(path: Path, count: int, size: tuple[int, int] = (96, 64)) -> list[int]:
    """A real mp4v file of flat grey frames, frame ``i`` at level ``20 + 10 i`` (wrapping at 240); returns the levels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    levels = [20 + 10 * i % 220 for i in range(count)]
    for level in levels:
        writer.write(np.full((size[1], size[0], 3), level, np.uint8))
    writer.release()
    return levels


# --------------------------------------------------------------------------- files, folders, synthetic scenes


def test_a_video_file_is_read_in_order_without_drops_and_ends(tmp_path: Path) -> None:
    levels = _write_video(tmp_path / "clip.mp4", 12)
    with open_source(tmp_path / "clip.mp4", queue_size=2) as stream:
        assert (stream.live, stream.policy) == (False, "block")
        got = []
        for frame in stream:
            time.sleep(0.005)  # a consumer slower than decoding: capture waits instead of dropping
            got.append(frame)
        kinds = [event.kind for event in stream.events()]
    assert [f.index for f in got] == list(range(12))
    assert [round(float(f.image.mean())) for f in got] == pytest.approx(levels, abs=4)
    assert all(f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8 for f in got)
    assert all(a.timestamp <= b.timestamp for a, b in zip(got, got[1:], strict=False))
    assert (stream.dropped, stream.captured, stream.size) == (0, 12, (96, 64))
    assert stream.max_depth <= 2
    assert kinds == ["opened", "ended"]


def test_file_uri_loop_and_max_frames(tmp_path: Path) -> None:
    _write_video(tmp_path / "clip.mp4", 5)
    with open_source(f"file://{tmp_path / 'clip.mp4'}", loop=True, max_frames=13) as stream:
        got, events = _all(stream), stream.events()
    assert [f.index for f in got] == list(range(13))
    assert [round(float(f.image.mean())) for f in got[5:10]] == pytest.approx([20, 30, 40, 50, 60], abs=4)
    assert [e.kind for e in events] == ["opened", "ended"] and "max_frames=13" in events[-1].message


def _write_images(folder: Path) -> None:
    folder.mkdir()
    for name, level in (("b.png", 60), ("a.png", 30), ("c.jpg", 90)):
        cv2.imwrite(str(folder / name), np.full((20, 30, 3), level, np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not an image either")


def test_a_folder_gives_its_images_in_name_order_and_skips_unreadable_ones(tmp_path: Path) -> None:
    _write_images(tmp_path / "photos")
    with open_source(tmp_path / "photos") as stream:
        got = _all(stream)
        events = stream.events()
    assert [Path(f.source).name for f in got] == ["a.png", "b.png", "c.jpg"]
    assert [int(f.image.mean()) for f in got] == pytest.approx([30, 60, 90], abs=2)
    skipped = [e for e in events if e.kind == "skipped"]
    assert len(skipped) == 1 and "broken.png" in skipped[0].message
    assert sorted(e.kind for e in events) == ["ended", "opened", "skipped"] and events[-1].kind == "ended"


def test_a_glob_picks_the_files_it_matches(tmp_path: Path) -> None:
    _write_images(tmp_path / "photos")
    with open_source(str(tmp_path / "photos" / "*.png")) as stream:
        got, kinds = _drain(stream)
    assert [Path(f.source).name for f in got] == ["a.png", "b.png"]
    assert sorted(kinds) == ["ended", "opened", "skipped"] and kinds[-1] == "ended"  # the skip is reported as it is read


def test_synthetic_truth_boxes_are_exactly_where_the_shapes_are_drawn() -> None:
    scene = MovingShapes(np.random.default_rng(5), 320, 240, 4)
    scene.background[:] = 128  # a flat, noiseless stage: every pixel that changes belongs to a shape
    scene.noise[:] = 0
    for _ in range(8):
        image, truth = scene.render()
        drawn = np.abs(image.astype(np.int16) - 128).max(2) > 50
        near_a_box = np.zeros_like(drawn)
        for x1, y1, x2, y2 in truth[:, 1:5]:
            near_a_box[max(int(y1) - 2, 0) : int(y2) + 3, max(int(x1) - 2, 0) : int(x2) + 3] = True
            inside = drawn[int(np.ceil(y1)) : int(y2) + 1, int(np.ceil(x1)) : int(x2) + 1]
            rows, cols = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
            height, width = inside.shape
            assert rows[0] <= 2 and rows[-1] >= height - 3 and cols[0] <= 2 and cols[-1] >= width - 3  # reaches every edge
        assert not (drawn & ~near_a_box).any(), "a shape was drawn outside every truth box"


def test_synthetic_shapes_move_over_a_textured_background_with_truth() -> None:
    width, height, seed = 320, 240, 5
    with open_source(f"synthetic://shapes?width={width}&height={height}&fps=0&frames=6&objects=3&seed={seed}") as stream:
        got = _all(stream)
    background = MovingShapes(np.random.default_rng(seed), width, height, 3).background
    luma = np.array([0.114, 0.587, 0.299])
    for frame in got:
        truth = frame.truth
        assert truth.dtype == np.float32 and truth.shape == (3, 6)
        assert set(truth[:, 0].astype(int)) <= {0, 1, 2, 3}
        assert (truth[:, 1:3] >= 0).all() and (truth[:, 3] <= width).all() and (truth[:, 4] <= height).all()
        contrast = np.abs((frame.image.astype(np.float32) - background) @ luma)
        for cx, cy in (truth[:, 1:3] + truth[:, 3:5]) / 2:
            assert contrast[int(cy) - 1 : int(cy) + 2, int(cx) - 1 : int(cx) + 2].mean() > 60  # a shape stands out here
    assert not np.array_equal(got[0].truth, got[-1].truth), "the shapes should move"


def test_synthetic_frames_depend_only_on_the_seed() -> None:
    def take(uri: str) -> list[np.ndarray]:
        with open_source(uri) as stream:
            return [f.image for f in stream]

    a, b = take("synthetic://shapes?fps=0&frames=3&seed=2"), take("synthetic://shapes?fps=0&frames=3&seed=2")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], take("synthetic://shapes?fps=0&frames=1&seed=3")[0])
    noise = take("synthetic://noise?width=32&height=16&fps=0&frames=2")
    assert noise[0].shape == (16, 32, 3) and not np.array_equal(noise[0], noise[1])


def test_keyword_options_win_over_the_query() -> None:
    with open_source("synthetic://shapes?width=64&height=48&fps=0&frames=1", width=80, max_frames=1) as stream:
        frame = stream.read(timeout=5)
    assert frame is not None and frame.image.shape == (48, 80, 3)
    assert frame.source == "synthetic://shapes?width=64&height=48&fps=0&frames=1"


# --------------------------------------------------------------------------- queue policies


def test_the_latest_policy_drops_the_oldest_frames_and_counts_them() -> None:
    q = FrameQueue(2, drop_oldest=True)
    for i in range(5):
        assert q.put(Frame(np.zeros((1, 1, 3), np.uint8), i, float(i)))
    assert (q.dropped, q.max_depth) == (3, 2)
    assert [q.get(0).index, q.get(0).index] == [3, 4]
    assert q.get(0.01) is None


def test_a_live_source_with_a_slow_consumer_drops_and_counts() -> None:
    with open_source("synthetic://shapes?width=64&height=48&fps=200&frames=60", queue_size=2) as stream:
        assert (stream.live, stream.policy) == (True, "latest")
        got = []
        for frame in stream:
            got.append(frame.index)
            time.sleep(0.02)
    assert stream.dropped > 0 and stream.captured == 60 == len(got) + stream.dropped
    assert got == sorted(set(got)) and got[-1] == 59  # increasing, with gaps; the newest frame is never lost
    assert stream.max_depth <= 2


def test_the_block_policy_drops_nothing(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(30, every=0.001))  # a live device read faster than the consumer keeps up
    with open_source(device.uri, policy="block", queue_size=2, reconnect=False) as stream:
        got = []
        for frame in stream:
            got.append(frame.index)
            time.sleep(0.003)
    assert got == list(range(30)) and stream.dropped == 0 and stream.max_depth <= 2


# --------------------------------------------------------------------------- failures


def test_a_read_that_never_returns_hits_the_deadline_and_ends_the_stream(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(3) + [HANG], reconnectable=False)
    started = time.monotonic()
    with open_source(device.uri, read_timeout=0.2) as stream:
        got, kinds = _drain(stream)
    assert time.monotonic() - started < 2.0
    assert len(got) == 3 and kinds == ["opened", "stalled", "ended"]


def test_a_stalled_camera_is_abandoned_and_opened_again(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(3) + [HANG], frames(3))
    with open_source(device.uri, max_retries=1, **FAST) as stream:
        got, kinds = _drain(stream)
    assert [f.index for f in got] == list(range(6))
    assert kinds[:5] == ["opened", "stalled", "reconnecting", "reconnected", "disconnected"]
    assert kinds[-1] == "gave-up"  # the second connection ends, and the third is refused
    assert device.opens == 3


def test_read_failures_reconnect_with_capped_backoff_and_recover(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(3) + [NONE], REFUSE, REFUSE, REFUSE, frames(3, size=(64, 48)))
    with open_source(device.uri, max_retries=4, **FAST) as stream:
        got = _all(stream)
        events = stream.events()
    kinds = [e.kind for e in events]
    assert kinds[:7] == ["opened", "disconnected", "reconnecting", "reconnecting", "reconnecting", "reconnecting",
                         "reconnected"]
    attempts = [e for e in events if e.kind == "reconnecting"][:4]
    assert [e.message.split()[1] for e in attempts] == ["1", "2", "3", "4"]
    assert [e.message.split(" in ")[1].split()[0] for e in attempts] == ["0.02", "0.04", "0.08", "0.08"]
    gaps = np.diff([e.timestamp for e in attempts])
    assert (gaps >= [0.02, 0.04, 0.08]).all() and (gaps < 0.5).all()
    assert [f.index for f in got] == list(range(6))


def test_giving_up_after_max_retries_ends_the_stream(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(2) + [NONE])
    started = time.monotonic()
    with open_source(device.uri, max_retries=2, **FAST) as stream:
        got, kinds = _drain(stream)
    assert time.monotonic() - started < 2.0
    assert len(got) == 2 and kinds == ["opened", "disconnected", "reconnecting", "reconnecting", "gave-up"]
    assert stream.ended and stream.read(timeout=0.01) is None


def test_an_exception_in_read_is_a_disconnect(fake: list[FakeDevice]) -> None:
    camera = _device(fake, frames(2) + [RAISE], frames(2))
    with open_source(camera.uri, max_retries=1, **FAST) as stream:
        got, events = _all(stream), stream.events()
    assert len(got) == 4 and [e.kind for e in events][:4] == ["opened", "disconnected", "reconnecting", "reconnected"]
    assert "device unplugged" in events[1].message
    clip = _device(fake, frames(2) + [RAISE], live=False, reconnectable=False)
    with open_source(clip.uri, **FAST) as stream:
        got, kinds = _drain(stream)
    assert len(got) == 2 and kinds == ["opened", "disconnected", "ended"]


def test_a_frozen_camera_is_stale_and_reconnected(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(2) + [FROZEN], frames(2))
    with open_source(device.uri, stale_after=0.15, max_retries=1, **FAST) as stream:
        got, kinds = _drain(stream)
    assert kinds[:4] == ["opened", "stale", "reconnecting", "reconnected"]
    assert [f.index for f in got] == sorted({f.index for f in got}) and len(got) >= 4
    repeated = [f for f in got if f.image[0, 0, 0] == got[1].image[0, 0, 0]]
    assert 2 <= len(repeated) < 40  # the frozen frame passed through only until it was declared stale


def test_a_still_file_is_reported_stale_but_plays_on(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(1) + [SAME] * 30, live=False, reconnectable=False)
    with open_source(device.uri, stale_after=0.1) as stream:
        got, kinds = _drain(stream)
    assert len(got) == 31 and kinds == ["opened", "stale", "ended"]


def test_a_resolution_change_is_reported_and_frames_keep_their_new_size(fake: list[FakeDevice]) -> None:
    device = _device(fake, frames(2, size=(64, 48)) + frames(2, size=(80, 60)), reconnectable=False)
    with open_source(device.uri) as stream:
        got, events = _all(stream), stream.events()
    assert [f.image.shape for f in got] == [(48, 64, 3)] * 2 + [(60, 80, 3)] * 2
    assert [e.kind for e in events] == ["opened", "resized", "ended"] and "64x48 -> 80x60" in events[1].message
    assert stream.size == (80, 60)


def test_on_event_sees_every_event_and_a_failing_callback_does_not_stop_capture(fake: list[FakeDevice]) -> None:
    seen: list[SourceEvent] = []

    def callback(event: SourceEvent) -> None:
        seen.append(event)
        raise RuntimeError("app bug")

    device = _device(fake, frames(3), reconnectable=False)
    with open_source(device.uri, on_event=callback) as stream:
        assert len(_all(stream)) == 3
    assert [e.kind for e in seen] == ["opened", "ended"] and all(e.source == device.uri for e in seen)


def test_events_are_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03d}.png").write_bytes(b"junk")
    cv2.imwrite(str(folder / "999.png"), np.zeros((4, 4, 3), np.uint8))
    with open_source(folder) as stream:
        assert len(_all(stream)) == 1
        events = stream.events()
    assert len(events) == 256 and events[-1].kind == "ended"


# --------------------------------------------------------------------------- stopping


def _threads_and_fds() -> tuple[int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def _settled(baseline: tuple[int, int], timeout: float = 2.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while _threads_and_fds() != baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    return _threads_and_fds()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors through /proc")
def test_threads_and_file_descriptors_return_to_baseline(tmp_path: Path, fake: list[FakeDevice]) -> None:
    _write_video(tmp_path / "clip.mp4", 30)
    _write_images(tmp_path / "photos")
    device = _device(fake, frames(2) + [NONE], frames(50, every=0.005))
    baseline = _threads_and_fds()
    for source, options, reads in ((tmp_path / "clip.mp4", {}, 1), (tmp_path / "photos", {}, 1),
                                   ("synthetic://shapes?width=64&height=48", {}, 1), (device.uri, FAST, 4)):
        stream = open_source(source, **options)
        assert all(stream.read(timeout=5) is not None for _ in range(reads))  # the fake: into its second connection
        assert threading.active_count() > baseline[0]
        stream.close()  # mid-stream: the file is open, the camera is capturing
        stream.close()  # and again: a no-op
        assert stream.read(timeout=0.5) is None and stream.ended
    assert device.closes == device.opens == 2
    assert _settled(baseline) == baseline


def test_close_from_another_thread_wakes_a_blocked_reader_quickly() -> None:
    stream = open_source("synthetic://shapes?width=64&height=48&fps=2")
    assert stream.read(timeout=5) is not None
    timer = threading.Timer(0.1, stream.close)
    timer.start()
    started = time.monotonic()
    assert stream.read() is None  # the next frame is half a second away; close() ends the wait
    assert time.monotonic() - started < 0.4
    timer.join()


# --------------------------------------------------------------------------- URIs and options


def test_uris_map_to_readers(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert (parse_source(0).scheme, parse_source(0).target) == ("v4l2", "0")
    assert (parse_source("/dev/video2").scheme, parse_source("2").scheme) == ("v4l2", "v4l2")
    spec = parse_source("v4l2:///dev/video1?width=1280&format=mjpg", {"width": 640, "height": None})
    assert (spec.target, dict(spec.options)) == ("/dev/video1", {"width": 640, "format": "MJPG"})
    assert parse_source("rtsp://cam/live?channel=1&user=a").target == "rtsp://cam/live?channel=1&user=a"
    assert parse_source(f"file://{tmp_path / 'clip.mp4'}").scheme == "file"
    assert (parse_source(tmp_path).scheme, parse_source(str(tmp_path / "*.jpg")).scheme) == ("folder", "folder")
    assert parse_source("csi://1?fps=29.97&flip=2").options == {"fps": 29.97, "flip": 2}


BAD = [
    ("nosuchscheme://x", {}, UsageError, "nosuchscheme"),
    ("missing-clip.mp4", {}, InputFileError, "missing-clip.mp4"),
    ("file:///no/such/clip.mp4", {}, InputFileError, "/no/such/clip.mp4"),
    ("synthetic://cubes", {}, UsageError, "cubes"),
    ("synthetic://shapes?width=abc", {}, UsageError, "width='abc'"),
    ("synthetic://shapes?width=0", {}, UsageError, "width='0'"),
    ("synthetic://shapes?fps=-1", {}, UsageError, "fps='-1'"),
    ("synthetic://shapes?fps=nan", {}, UsageError, "fps='nan'"),
    ("synthetic://shapes?objects=99", {}, UsageError, "objects"),
    ("synthetic://shapes?colour=red", {}, UsageError, "colour"),
    ("synthetic://shapes?width=1&width=2", {}, UsageError, "twice"),
    ("synthetic://noise?objects=2", {}, UsageError, "objects"),
    ("synthetic://shapes", {"width": 2.5}, UsageError, "width"),
    ("synthetic://shapes", {"policy": "newest"}, UsageError, "newest"),
    ("synthetic://shapes", {"queue_size": 0}, UsageError, "queue_size"),
    ("synthetic://shapes", {"read_timeout": 0}, UsageError, "read_timeout"),
    ("synthetic://shapes", {"stale_after": -1}, UsageError, "stale_after"),
    ("synthetic://shapes", {"max_retries": -1}, UsageError, "max_retries"),
    ("synthetic://shapes", {"max_frames": 0}, UsageError, "max_frames"),
    ("synthetic://shapes", {"backoff": (1.0, 0.5)}, UsageError, "backoff"),
    (-1, {}, UsageError, "-1"),
    (1.5, {}, UsageError, "float"),
    ("", {}, UsageError, "empty"),
    ("/dev/video97", {}, InputFileError, "/dev/video97"),
    ("v4l2:///dev/video97?fps=0", {}, UsageError, "fps=0"),
    ("csi://front", {}, UsageError, "sensor id"),
    ("gst://videotestsrc ! autovideosink", {}, UsageError, "appsink"),
    ("rtsp://cam/live", {"width": 640}, UsageError, "width"),
]


@pytest.mark.parametrize(("uri", "options", "error", "names"), BAD, ids=[f"{b[0]}-{sorted(b[1])}" for b in BAD])
def test_bad_sources_and_options_give_one_line_errors(uri: object, options: dict, error: type, names: str) -> None:
    with pytest.raises(EdgeDLError) as caught:
        open_source(uri, **options)  # type: ignore[arg-type]
    assert type(caught.value) is error
    message = str(caught.value)
    assert "\n" not in message and names in message and "fix:" in message


def test_bad_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.mp4").write_text("this is not a video")
    (tmp_path / "clip.mp4").write_bytes(b"")
    for source, options, error, names in (
        (tmp_path / "empty", {}, InputFileError, "no images"),
        (str(tmp_path / "*.jpg"), {}, InputFileError, "no files match"),
        (tmp_path / "text.mp4", {}, InputFileError, "could not open"),
        (tmp_path / "clip.mp4", {"fps": 30}, UsageError, "fps"),
        (tmp_path / "empty", {"width": 64}, UsageError, "width"),
    ):
        with pytest.raises(error, match=names) as caught:
            open_source(source, **options)
        assert "\n" not in str(caught.value) and str(source) in str(caught.value)


def test_a_network_camera_that_never_answers_fails_within_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts the connection, never says a word
        uri = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/live"
        started = time.monotonic()
        with pytest.raises(InputFileError, match="could not open") as caught:
            open_source(uri, read_timeout=0.5)
    assert time.monotonic() - started < 3.0 and uri in str(caught.value)


def test_a_registered_scheme_must_be_a_scheme_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "READERS", dict(registry.READERS))
    with pytest.raises(UsageError, match="scheme"):
        register_reader("Not A Scheme", make_reader)


# --------------------------------------------------------------------------- GStreamer


def test_gstreamer_sources_say_how_to_get_gstreamer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opencv_build, "has_gstreamer", lambda: False)
    for uri in ("csi://0", "gst://videotestsrc ! videoconvert ! appsink"):
        with pytest.raises(MissingDependencyError) as caught:
            open_source(uri)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{uri}: needs OpenCV built with GStreamer")
        assert message.endswith(opencv_build.NO_GSTREAMER_FIX)


def test_jetson_pipelines() -> None:
    csi = gstreamer.csi_pipeline(1, 1920, 1080, 29.97, 2)
    assert "nvarguscamerasrc sensor-id=1" in csi and "width=1920,height=1080,framerate=30000/1001" in csi
    assert "flip-method=2" in csi and csi.endswith("appsink drop=true max-buffers=1 sync=false")
    assert [gstreamer.framerate(f) for f in (30, 7.5, 59.94, 23.976)] == ["30/1", "15/2", "60000/1001", "24000/1001"]
    rtsp = gstreamer.rtsp_hardware_pipeline("rtsp://cam/live")
    assert rtsp.startswith('rtspsrc location="rtsp://cam/live"') and "nvv4l2decoder" in rtsp and "appsink" in rtsp


def test_ctrl_c_in_a_frame_loop_stops_capture_cleanly() -> None:
    with child_process([sys.executable, "-c", SIGINT_APP], cwd=Path(__file__).resolve().parent.parent,
                       stdout=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "frame"
        interrupted = time.monotonic()
        child.send_signal(signal.SIGINT)  # while the app waits in read() for the next frame
        out, _ = child.communicate(timeout=10)
    assert time.monotonic() - interrupted < 2.0
    assert out.split()[-2:] == ["stopped", "1"] and child.returncode == 0  # one thread left: the main one


SIGINT_APP = """
import threading
from edgedl.sources import open_source
try:
    with open_source("synthetic://shapes?width=64&height=48&fps=2") as stream:
        for frame in stream:
            print("frame", flush=True)
except KeyboardInterrupt:
    print("stopped", threading.active_count(), flush=True)
"""
