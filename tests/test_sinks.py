"""Sinks (video, image folder, JSON lines, display, GStreamer streams) and the overlay drawer, on hand-made results."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedl import opencv_build, overlay
from edgedl.errors import MissingDependencyError, OutputError, UsageError
from edgedl.results import ClassScore, Detections, Frame, Prediction, Result
from edgedl.sinks import FolderSink, JsonLinesSink, SinkTarget, VideoSink, open_sink
from edgedl.sinks import display as display_module
from edgedl.sinks import stream as stream_module

LABELS = ["circle", "square", "triangle"]


def _image(width: int = 64, height: int = 48, value: int = 60) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _result(image: np.ndarray, index: int = 0, boxes: list[list[float]] | None = None, class_ids: list[int] | None = None,
            classes: list[ClassScore] | None = None, mask: np.ndarray | None = None) -> Result:
    boxes = boxes or []
    ids = class_ids if class_ids is not None else [0] * len(boxes)
    dets = Detections(np.array(boxes, np.float32).reshape(-1, 4), np.linspace(0.9, 0.5, len(boxes)), np.array(ids), LABELS)
    prediction = Prediction(detections=dets, classes=classes or [], mask=mask)
    return Result(Frame(image, index, 100.0 + index / 30, "synthetic://shapes"), prediction, None,
                  {"preprocess": 1.25, "infer": 4.5}, 7.125, dropped=2)


def _read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _one_line(exc: pytest.ExceptionInfo, *words: str) -> None:
    text = str(exc.value)
    assert "\n" not in text, text
    for word in words:
        assert word in text, text


# ---------------------------------------------------------------- video


@pytest.mark.parametrize("name", ["out.mp4", "out.avi", "out.mkv"])
def test_video_round_trip_keeps_every_frame_and_the_size(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    with open_sink(target, fps=15, overlay=False) as sink:
        for i in range(12):
            sink.write(_result(_image(value=20 * i), index=i))
        assert not target.exists()  # still being written, under a hidden temporary name beside it
        [partial] = tmp_path.iterdir()
        assert partial.name.startswith(".out.") and partial.suffix == target.suffix
    frames = _read_video(target)
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    assert abs(float(frames[5].mean()) - 100) < 8  # the frames written, in order (codecs are lossy)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_video_resizes_frames_of_another_size_to_the_first(tmp_path: Path) -> None:
    target = tmp_path / "sizes.avi"
    with open_sink(target) as sink:
        for i, (w, h) in enumerate([(64, 48), (128, 96), (32, 24), (50, 70)]):
            sink.write(_result(_image(w, h), index=i, boxes=[[2, 2, 20, 20]]))
    frames = _read_video(target)
    assert len(frames) == 4 and {f.shape for f in frames} == {(48, 64, 3)}


def test_video_refuses_an_existing_file_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"keep me")
    with pytest.raises(OutputError) as info:
        open_sink(target)
    _one_line(info, str(target), "already exists", "--overwrite")
    assert target.read_bytes() == b"keep me"
    with open_sink(target, overwrite=True) as sink:
        sink.write(_result(_image()))
        assert target.read_bytes() == b"keep me"  # replaced only when the new video is finished
    assert len(_read_video(target)) == 1


def test_a_video_sink_that_got_no_frames_leaves_nothing(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "empty.mp4")
    sink.close()
    sink.close()  # idempotent
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        sink.write(_result(_image()))


def test_video_options_in_the_uri(tmp_path: Path) -> None:
    sink = open_sink(f"{tmp_path}/o.mkv?fps=12.5&fourcc=MJPG")
    assert isinstance(sink, VideoSink) and (sink.fps, sink.fourcc) == (12.5, "MJPG")
    sink.write(_result(_image()))
    sink.close()
    assert cv2.VideoCapture(str(tmp_path / "o.mkv")).get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)


# ---------------------------------------------------------------- image folder


def test_folder_sink_names_images_by_frame_index(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    sink = open_sink(f"{folder}/")
    assert isinstance(sink, FolderSink) and not folder.exists()  # created by the first frame
    for index in (3, 7, 1234):
        sink.write(_result(_image(), index=index))
    sink.close()
    assert sorted(p.name for p in folder.iterdir()) == ["000003.jpg", "000007.jpg", "001234.jpg"]
    image = cv2.imread(str(folder / "000007.jpg"))
    assert image.shape == (48, 64, 3) and abs(float(image.mean()) - 60) < 3


def test_folder_png_is_the_frame_exactly_and_overlay_draws_on_a_copy(tmp_path: Path) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    before = frame.copy()
    result = _result(frame, boxes=[[10, 10, 40, 30]])
    with open_sink(f"folder://{tmp_path}/plain?format=png", overlay=False) as plain:
        plain.write(result)
    with open_sink(f"folder://{tmp_path}/drawn?format=png") as drawn:
        drawn.write(result)
    assert np.array_equal(frame, before)  # the result's frame is never drawn on
    assert np.array_equal(cv2.imread(str(tmp_path / "plain" / "000000.png")), frame)
    annotated = cv2.imread(str(tmp_path / "drawn" / "000000.png"))
    assert not np.array_equal(annotated[20, 10], frame[20, 10])  # a pixel of the box's left edge


def test_folder_with_frames_is_refused_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "000001.jpg").write_bytes(b"old")
    with pytest.raises(OutputError) as info:
        open_sink(tmp_path)  # an existing folder, no trailing slash needed
    _one_line(info, "already holds frame images", "--overwrite")
    with open_sink(tmp_path, overwrite=True) as sink:
        sink.write(_result(_image(), index=1))
    assert cv2.imread(str(tmp_path / "000001.jpg")) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000001.jpg"]  # no temporary files left


# ---------------------------------------------------------------- JSON lines


def test_jsonl_writes_one_complete_record_per_frame_as_it_goes(tmp_path: Path) -> None:
    target = tmp_path / "results.jsonl"
    sink = open_sink(target)
    assert isinstance(sink, JsonLinesSink) and not target.exists()
    sink.write(_result(_image(), index=4, boxes=[[1.234, 2, 30.5, 40]], class_ids=[1]))
    assert target.read_text().count("\n") == 1  # on disk before close: a killed run keeps what it wrote
    sink.write(_result(_image(), index=5, classes=[ClassScore(2, "triangle", 0.875)], mask=np.zeros((48, 64), np.int32)))
    sink.write(_result(_image(), index=6, boxes=[[0, 0, 5, 5], [6, 6, 9, 9]], class_ids=[0, 7]))
    sink.close()
    assert sink.frames == 3
    first, second, third = [json.loads(line) for line in target.read_text().splitlines()]
    assert first["frame_id"] == 4 and first["source"] == "synthetic://shapes" and first["dropped"] == 2
    assert first["latency_ms"] == 7.125 and first["timings"] == {"preprocess": 1.25, "infer": 4.5}
    assert first["timestamp"] == pytest.approx(100 + 4 / 30)
    assert first["detections"] == [{"box": [1.23, 2.0, 30.5, 40.0], "score": 0.9, "class_id": 1, "label": "square"}]
    assert first["classes"] == [] and first["mask_shape"] is None
    assert second["detections"] == [] and second["mask_shape"] == [48, 64]
    assert second["classes"] == [{"class_id": 2, "label": "triangle", "score": 0.875}]
    assert [(d["class_id"], d["label"]) for d in third["detections"]] == [(0, "circle"), (7, "7")]


def test_jsonl_refuses_an_existing_file_and_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    target.write_text("old\n")
    with pytest.raises(OutputError) as info:
        open_sink(target)
    _one_line(info, "already exists", "--overwrite")
    with open_sink(target, overwrite=True) as sink:
        sink.write(_result(_image()))
    assert json.loads(target.read_text())["frame_id"] == 0
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(OutputError) as info:
        open_sink(f"file://{tmp_path}/dir.jsonl")
    _one_line(info, "is a folder")


# ---------------------------------------------------------------- display


def test_display_is_refused_without_a_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    for uri in ("display", "display://"):
        with pytest.raises(UsageError) as info:
            open_sink(uri)
        _one_line(info, "no display here", "write a video instead: --sink out.mp4")


def test_display_is_refused_by_an_opencv_without_gui(monkeypatch: pytest.MonkeyPatch) -> None:
    if opencv_build.has_gui():
        pytest.skip("this OpenCV has a GUI backend")
    monkeypatch.setenv("DISPLAY", ":0")
    with pytest.raises(UsageError) as info:
        open_sink("display")
    _one_line(info, "no GUI backend", "--sink out.mp4")
    # Where the build information misleads, the window itself failing is the same one-line error.
    monkeypatch.setattr(display_module, "display_problem", lambda: None)
    sink = open_sink("display")
    with pytest.raises(UsageError) as info:
        sink.write(_result(_image()))
    _one_line(info, "could not open a window", "--sink out.mp4")


class _FakeWindows:
    """Stands in for OpenCV's window functions: scripted keys and visibility, and a log of calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, keys: list[int], visible: list[float]) -> None:
        self.keys, self.visible, self.calls = keys, visible, []
        monkeypatch.setattr(display_module, "display_problem", lambda: None)
        for name in ("namedWindow", "imshow", "destroyWindow", "waitKey", "getWindowProperty"):
            monkeypatch.setattr(cv2, name, lambda *args, name=name: self._call(name))

    def _call(self, name: str) -> float | None:
        self.calls.append(name)
        if name == "waitKey":
            return self.keys.pop(0) if self.keys else -1
        if name == "getWindowProperty":
            return self.visible.pop(0) if self.visible else 1.0
        return None


def test_q_asks_the_pipeline_to_stop_and_closes_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = _FakeWindows(monkeypatch, keys=[-1, ord("q")], visible=[])
    sink = open_sink("display://cam")
    sink.write(_result(_image()))
    assert not sink.stop_requested and windows.calls.count("namedWindow") == 1
    sink.write(_result(_image()))
    assert sink.stop_requested and windows.calls[-2:] == ["destroyWindow", "waitKey"]
    sink.write(_result(_image()))  # frames still in flight are not shown (that would open the window again)
    sink.close()
    assert windows.calls.count("imshow") == 2 and windows.calls.count("destroyWindow") == 1


def test_a_window_the_user_closed_asks_the_pipeline_to_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    _FakeWindows(monkeypatch, keys=[], visible=[0.0, 1.0, 0.0])
    sink = open_sink("display")
    sink.write(_result(_image()))
    assert not sink.stop_requested  # not yet shown is not closed
    sink.write(_result(_image()))
    sink.write(_result(_image()))
    assert sink.stop_requested


def test_only_the_thread_that_made_the_window_closes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = _FakeWindows(monkeypatch, keys=[], visible=[])
    sink = open_sink("display")
    writer = threading.Thread(target=sink.write, args=(_result(_image()),))
    writer.start()
    writer.join()
    sink.close()  # from another thread: with Qt, waitKey here would hang
    assert "destroyWindow" not in windows.calls
    with open_sink("display") as same_thread:
        same_thread.write(_result(_image()))
    assert windows.calls[-2:] == ["destroyWindow", "waitKey"]


# ---------------------------------------------------------------- GStreamer streams


def test_stream_sink_needs_opencv_with_gstreamer(tmp_path: Path) -> None:
    if opencv_build.has_gstreamer():
        with open_sink("gst://appsrc ! videoconvert ! fakesink") as sink:
            for i in range(3):
                sink.write(_result(_image(), index=i))
        assert sink.frames == 3
        return
    for uri in ("rtp://127.0.0.1:5000", "rtsp://localhost:8554/cam", "gst://appsrc ! fakesink"):
        with pytest.raises(MissingDependencyError) as info:
            open_sink(uri)
        _one_line(info, uri, "built without it", opencv_build.NO_GSTREAMER_FIX)
        assert info.value.exit_code == 9


def test_stream_pipelines_prefer_the_jetson_hardware_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    rtp = SinkTarget("rtp://10.0.0.2:5004", "rtp", "10.0.0.2:5004")
    rtsp = SinkTarget("rtsp://server:8554/cam", "rtsp", "server:8554/cam")
    monkeypatch.setattr(stream_module, "gst_element_exists", lambda name: name == "nvv4l2h264enc")
    jetson = stream_module.pipeline_for(rtp, 30)
    assert jetson.startswith("appsrc ! ") and "nvv4l2h264enc" in jetson and "iframeinterval=30" in jetson
    assert jetson.endswith("rtph264pay config-interval=1 pt=96 ! udpsink host=10.0.0.2 port=5004 sync=false")
    monkeypatch.setattr(stream_module, "gst_element_exists", lambda name: False)
    software = stream_module.pipeline_for(rtsp, 15)
    assert "x264enc" in software and "nvv4l2h264enc" not in software and "key-int-max=15" in software
    assert software.endswith("rtspclientsink location=rtsp://server:8554/cam")
    custom = SinkTarget("gst://appsrc ! x264enc ! fakesink", "gst", "appsrc ! x264enc ! fakesink")
    assert stream_module.pipeline_for(custom, 30) == "appsrc ! x264enc ! fakesink"


def test_an_rtsp_server_that_does_not_answer_is_an_output_error() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        stream_module.check_rtsp_server(f"rtsp://127.0.0.1:{listening.getsockname()[1]}/cam")
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()  # bound then closed: nothing listens on this port
    with pytest.raises(OutputError) as info:
        stream_module.check_rtsp_server(f"rtsp://127.0.0.1:{port}/cam", timeout_s=2)
    _one_line(info, f"rtsp://127.0.0.1:{port}/cam", "cannot reach the RTSP server", "start the server")


# ---------------------------------------------------------------- URIs and paths


def test_uris_pick_their_sink(tmp_path: Path) -> None:
    (tmp_path / "existing").mkdir()
    cases = {f"{tmp_path}/a.MP4": VideoSink, f"file://{tmp_path}/b.mov": VideoSink, f"{tmp_path}/new/": FolderSink,
             f"{tmp_path}/existing": FolderSink, f"folder://{tmp_path}/x": FolderSink, f"{tmp_path}/r.jsonl": JsonLinesSink}
    for uri, kind in cases.items():
        with open_sink(uri) as sink:
            assert type(sink) is kind, uri
    assert type(open_sink(tmp_path / "p.avi")) is VideoSink  # a Path works as well as a string


@pytest.mark.parametrize(("uri", "words"), [
    ("out.unknownext", ["out.unknownext", "unknown sink file type '.unknownext'", ".mp4"]),
    ("noextension", ["noextension", "no extension"]),
    ("ftp://host/out.mp4", ["ftp://", "unknown sink kind"]),
    ("", ["empty"]),
    ("out.mp4?bogus=1", ["unknown option 'bogus'", "fps, fourcc"]),
    ("out.mp4?fps=0", ["fps='0'", "above 0"]),
    ("out.mp4?fourcc=h264x", ["four characters"]),
    ("frames/?format=gif", ["format='gif'", "jpg or png"]),
    ("r.jsonl?fps=5", ["unknown option 'fps'", "none"]),
    ("rtp://10.0.0.2", ["rtp://10.0.0.2", "host and a port"]),
    ("rtp://:5000", ["host and a port"]),
    ("rtsp:///path", ["needs a server address"]),
    ("rtsp://cam:http/x", ["needs a server address"]),
    ("gst://videotestsrc ! autovideosink", ["must start with appsrc"]),
])
def test_bad_uris_are_one_line_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str,
                                            words: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as info:
        open_sink(uri)
    _one_line(info, *words)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    for fps in (0, -1, float("nan"), "30"):
        with pytest.raises(UsageError, match="fps"):
            open_sink(tmp_path / "o.mp4", fps=fps)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="path or a URI"):
        open_sink(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [
    lambda tmp: tmp / "missing" / "out.mp4",
    lambda tmp: tmp / "missing" / "frames/",
    lambda tmp: Path("/proc/1/out.jsonl"),  # not writable, even for root
])
def test_missing_or_unwritable_folders_are_output_errors(tmp_path: Path, make) -> None:
    target = make(tmp_path)
    with pytest.raises(OutputError) as info:
        open_sink(str(target) + ("/" if str(target).endswith("frames") else ""))
    _one_line(info, "folder", "--sink")
    assert info.value.exit_code == 8


# ---------------------------------------------------------------- overlay


def test_overlay_draws_box_outlines_on_a_copy() -> None:
    image = _image(200, 150)
    before = image.copy()
    drawn = overlay.draw(image, _result(image, boxes=[[50, 60, 150, 120]], class_ids=[1]))
    assert np.array_equal(image, before)
    changed = (drawn != image).any(axis=2)
    assert changed[90, 50] and changed[90, 150] and changed[120, 100]  # left, right and bottom edges
    assert not changed[90, 100] and not changed[140, 20]  # inside the box, away from the label; outside it
    assert changed[45:60, 50:80].mean() > 0.5  # the label tag sits above the box


def test_overlay_copy_false_draws_in_place() -> None:
    image = _image(100, 80)
    dets = Detections(np.array([[10, 10, 50, 50]]), np.array([0.8]), np.array([2]), LABELS)
    drawn = overlay.draw(image, dets, copy=False)
    assert drawn is image and (image != 60).any()


def test_overlay_keeps_boxes_and_labels_inside_the_image() -> None:
    image = _image(120, 90)
    drawn = overlay.draw(image, _result(image, boxes=[[-40, -30, 60, 400], [100, 80, 500, 500]], class_ids=[0, 2]))
    changed = (drawn != image).any(axis=2)
    assert changed[50, 0] and changed[89, 30]  # clipped edges land on the border
    assert changed[0:10, 0:40].any()  # the first label moved down into the image


def test_overlay_colours_are_per_class_and_stable() -> None:
    colours = overlay.class_colours(np.arange(12))
    assert len({tuple(c) for c in colours.tolist()}) == 12
    assert np.array_equal(overlay.class_colours(np.array([5, 5])), np.repeat(colours[5:6], 2, axis=0))
    image = _image(100, 100, value=0)
    a = overlay.draw(image, _result(image, boxes=[[10, 10, 90, 90]], class_ids=[3]))
    b = overlay.draw(image, _result(image, boxes=[[10, 10, 90, 90]], class_ids=[4]))
    assert np.array_equal(a[50, 10], colours[3]) and np.array_equal(b[50, 10], colours[4])


def test_overlay_blends_the_mask_on_masked_pixels_only() -> None:
    image = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), np.int32)
    mask[10:30, 20:50] = 2
    mask[40:, :] = 5
    drawn = overlay.draw(image, _result(image, mask=mask).prediction)
    changed = (drawn != image).any(axis=2)
    assert changed[mask > 0].mean() > 0.95 and not changed[mask == 0].any()
    tint = drawn[15, 30].astype(int) - image[15, 30].astype(int)
    expected = 0.45 * (overlay.class_colours(np.array([2]))[0].astype(int) - image[15, 30].astype(int))
    assert np.abs(tint - expected).max() <= 1
    small = overlay.draw(image, _result(image, mask=mask[::2, ::2]).prediction)  # a mask at model resolution is scaled up
    assert not (small != image).any(axis=2)[mask == 0].any() and (small != image).any(axis=2)[12:28, 22:48].all()


def test_overlay_writes_classes_and_speed() -> None:
    image = _image(320, 240)
    result = _result(image, classes=[ClassScore(1, "square", 0.9), ClassScore(0, "circle", 0.05)])
    drawn = overlay.draw(image, result, fps=29.97)
    changed = (drawn != image).any(axis=2)
    assert changed[:40, :80].any() and changed[:20, -60:].any()  # top-k at the top left, fps and latency at the top right
    plain = overlay.draw(image, result.prediction)  # a bare prediction has no latency to show
    assert not (plain != image).any(axis=2)[:20, -40:].any()


def test_overlay_rejects_what_it_cannot_draw_on() -> None:
    with pytest.raises(UsageError, match="BGR uint8"):
        overlay.draw(np.zeros((10, 10), np.uint8), Prediction())
    with pytest.raises(UsageError, match="Result, Prediction or Detections"):
        overlay.draw(_image(), {"boxes": []})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="copy=True"):
        overlay.draw(_image()[:, ::2], Prediction(), copy=False)
