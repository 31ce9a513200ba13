"""Sinks for many sources: one output per source from a ``{source}`` template, and the tiled overview mosaic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_sinks import _FakeWindows, _one_line, _read_video

from edgedl.errors import OutputError, UsageError
from edgedl.results import Frame, Prediction, Result
from edgedl.sinks import PerSourceSink, TiledSink, VideoSink, open_sink
from edgedl.sinks.per_source import MAX_SLUG, file_slug

CAM, SHAPES, USB = "rtsp://cam1:554/live", "synthetic://shapes?seed=1", "/dev/video0"
#: A solid BGR colour per source, far apart, so a pixel says which source's frame it shows.
COLOURS = {CAM: (255, 0, 0), SHAPES: (0, 255, 0), USB: (0, 0, 255)}
SLUGS = {CAM: "rtsp-cam1-554-live", SHAPES: "synthetic-shapes-seed-1", USB: "dev-video0"}


def _result(source: str, index: int, colour: tuple[int, int, int] | None = None, size: tuple[int, int] = (64, 48)) -> Result:
    image = np.empty((size[1], size[0], 3), np.uint8)
    image[:] = COLOURS[source] if colour is None else colour
    return Result(Frame(image, index, 100.0 + index / 30, source), Prediction(), None, {"infer": 1.0}, 5.0, dropped=0)


def _rounds(sources: list[str], count: int) -> Iterator[Result]:
    """``count`` frames of each source, interleaved as a multi-source pipeline delivers them."""
    for index in range(count):
        for source in sources:
            yield _result(source, index)


def _near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 30) -> bool:
    return bool(np.abs(pixel.astype(int) - colour).max() <= tolerance)


# ---------------------------------------------------------------- one sink per source


def test_a_video_template_writes_one_video_per_source_with_its_frames(tmp_path: Path) -> None:
    sink = open_sink(f"{tmp_path}/out-{{source}}.mp4", fps=10)
    assert isinstance(sink, PerSourceSink) and sink.kind is VideoSink
    for result in _rounds([CAM, SHAPES, USB], 4):
        sink.write(result)
    assert list(sink.sinks) == [CAM, SHAPES, USB]
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"out-{slug}.mp4" for slug in SLUGS.values())
    for source, slug in SLUGS.items():
        frames = _read_video(tmp_path / f"out-{slug}.mp4")
        assert len(frames) == 4 and frames[0].shape == (48, 64, 3), source
        assert all(_near(frame[24, 32], COLOURS[source]) for frame in frames), source


def test_a_jsonl_template_opens_each_file_when_its_source_first_appears(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "results-{source}.jsonl")
    assert list(tmp_path.iterdir()) == []  # nothing until a result arrives
    sink.write(_result(CAM, 0))
    assert [p.name for p in tmp_path.iterdir()] == [f"results-{SLUGS[CAM]}.jsonl"]
    for result in _rounds([SHAPES, CAM], 3):
        sink.write(result)
    sink.close()
    assert sink.frames == 7
    for source, ids in ((CAM, [0, 0, 1, 2]), (SHAPES, [0, 1, 2])):
        records = [json.loads(line) for line in (tmp_path / f"results-{SLUGS[source]}.jsonl").read_text().splitlines()]
        assert [r["frame_id"] for r in records] == ids and {r["source"] for r in records} == {source}


def test_a_folder_template_gives_each_source_its_own_folder_of_frames(tmp_path: Path) -> None:
    with open_sink(f"folder://{tmp_path}/frames-{{source}}?format=png", overlay=False) as sink:
        for result in _rounds([SHAPES, USB], 2):
            sink.write(result)
    for source in (SHAPES, USB):
        folder = tmp_path / f"frames-{SLUGS[source]}"
        assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png"]
        assert np.array_equal(cv2.imread(str(folder / "000001.png"))[0, 0], COLOURS[source])


def test_slugs_are_readable_safe_file_names() -> None:
    assert {source: file_slug(source) for source in SLUGS} == SLUGS
    assert file_slug("0") == "0" and file_slug("csi://0") == "csi-0" and file_slug("front door") == "front-door"
    assert file_slug("../../etc/passwd") == "etc-passwd"  # no way out of the folder, no hidden files
    assert file_slug("") == file_slug(":///") == "source"
    kitchen = file_slug("Küche")  # a letter outside ASCII is dropped, so a hash keeps the name apart
    assert kitchen.startswith("K-che-") and len(kitchen) == len("K-che-") + 8 and kitchen != file_slug("Kéche")
    long = file_slug("rtsp://" + "x" * 200)
    assert len(long) == MAX_SLUG + 9 and long != file_slug("rtsp://" + "x" * 201)


def test_sources_whose_slugs_collide_get_files_of_their_own(tmp_path: Path) -> None:
    sources = ["cam/1", "cam:1", "CAM 1", "cam-1"]  # the same slug (the last one ignoring case)
    with open_sink(f"{tmp_path}/r-{{source}}.jsonl") as sink:
        for index, source in enumerate(sources):
            sink.write(Result(Frame(np.zeros((4, 4, 3), np.uint8), index, 0.0, source), Prediction(), None, {}, 0.0, 0))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len({name.lower() for name in names}) == 4 and "r-cam-1.jsonl" in names  # the first keeps the plain slug
    for name in names:
        [record] = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        assert name == "r-cam-1.jsonl" or name.lower().startswith("r-cam-1-")
        assert (record["source"] == "cam/1") == (name == "r-cam-1.jsonl")


def test_an_existing_file_is_refused_when_its_source_appears_and_replaced_with_overwrite(tmp_path: Path) -> None:
    taken = tmp_path / f"out-{SLUGS[SHAPES]}.mp4"
    taken.write_bytes(b"keep me")
    sink = open_sink(f"{tmp_path}/out-{{source}}.mp4")  # the template itself is fine
    sink.write(_result(CAM, 0))
    with pytest.raises(OutputError) as info:
        sink.write(_result(SHAPES, 0))
    _one_line(info, str(taken), "already exists", "--overwrite")
    sink.write(_result(CAM, 1))
    sink.close()
    assert taken.read_bytes() == b"keep me"  # nothing half-written: the refused file is untouched,
    assert len(_read_video(tmp_path / f"out-{SLUGS[CAM]}.mp4")) == 2  # the other source's video is finished,
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([taken.name, f"out-{SLUGS[CAM]}.mp4"])  # no leftovers
    with open_sink(f"{tmp_path}/out-{{source}}.mp4", overwrite=True) as sink:
        sink.write(_result(SHAPES, 0))
    assert len(_read_video(taken)) == 1


def test_close_finishes_every_source_even_when_one_fails_then_raises_the_first_error(tmp_path: Path) -> None:
    sink = open_sink(f"{tmp_path}/out-{{source}}.avi")
    for result in _rounds([CAM, SHAPES, USB], 2):
        sink.write(result)
    for source in (CAM, USB):  # a folder where the finished video should go: moving it into place fails
        (tmp_path / f"out-{SLUGS[source]}.avi").mkdir()
    with pytest.raises(OutputError) as info:
        sink.close()
    _one_line(info, f"out-{SLUGS[CAM]}.avi", "cannot move the finished video")
    assert len(_read_video(tmp_path / f"out-{SLUGS[SHAPES]}.avi")) == 2  # closed after the first failure
    assert all(s.closed for s in sink.sinks.values())
    sink.close()  # once only


def test_a_template_needs_a_writable_folder_at_open(tmp_path: Path) -> None:
    with pytest.raises(OutputError) as info:
        open_sink(f"{tmp_path}/missing/out-{{source}}.mp4")
    _one_line(info, "missing", "folder does not exist")


# ---------------------------------------------------------------- tiled overview


def test_the_mosaic_shows_each_source_in_its_tile(tmp_path: Path) -> None:
    sink = open_sink(f"tiled://{tmp_path}/grid/?format=png&width=320", overlay=False)
    assert isinstance(sink, TiledSink)
    for result in _rounds([CAM, SHAPES, USB], 4):
        sink.write(result)
    sink.close()
    assert sink.frames == 12 and sink.mosaics == 4  # one per round of sources, not one per result
    images = [cv2.imread(str(p)) for p in sorted((tmp_path / "grid").iterdir())]
    assert len(images) == 4 and {image.shape for image in images} == {(240, 320, 3)}  # 2 x 2 tiles of 160 x 120
    mosaic = images[-1]
    for (x, y), source in zip([(0, 0), (160, 0), (0, 120)], [CAM, SHAPES, USB], strict=True):
        assert np.array_equal(mosaic[y + 60, x + 80], COLOURS[source])  # the tile's middle: its source's frame
        assert not np.array_equal(mosaic[y + 117, x + 3], COLOURS[source])  # bottom left: the source's name
    assert not mosaic[120:, 160:].any()  # the fourth tile is empty


def test_a_mosaic_video_with_planned_columns_and_inner_options(tmp_path: Path) -> None:
    target = tmp_path / "overview.mkv"
    with open_sink(f"tiled://{target}?fps=12&fourcc=MJPG&cols=3&width=384", overlay=False) as sink:
        for result in _rounds([CAM, SHAPES, USB], 5):
            sink.write(result)
    frames = _read_video(target)
    assert len(frames) == 5 and frames[0].shape == (96, 384, 3)  # 3 tiles of 128 x 96 in one row
    assert cv2.VideoCapture(str(target)).get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    for frame in frames:
        assert all(_near(frame[48, 64 + 128 * i], COLOURS[s]) for i, s in enumerate([CAM, SHAPES, USB]))


def test_a_slow_source_keeps_its_last_frame_and_does_not_hold_the_mosaic_back(tmp_path: Path) -> None:
    sink = open_sink(f"tiled://{tmp_path}/grid/?format=png&width=256", overlay=False)
    fast = [(40 + index * 40, 0, 0) for index in range(5)]
    sink.write(_result(CAM, 0, fast[0]))
    sink.write(_result(SHAPES, 0))
    for index in range(1, 5):  # the camera runs on; the synthetic source stalls
        sink.write(_result(CAM, index, fast[index]))
    sink.close()
    mosaics = [cv2.imread(str(p)) for p in sorted((tmp_path / "grid").iterdir())]
    assert len(mosaics) == 5  # the first when the camera came round again, then one per camera frame
    for mosaic, colour in zip(mosaics, fast, strict=True):
        assert np.array_equal(mosaic[48, 64], colour) and np.array_equal(mosaic[48, 192], COLOURS[SHAPES])


def test_sources_n_writes_the_first_mosaic_once_n_sources_have_delivered(tmp_path: Path) -> None:
    folder = tmp_path / "grid"
    sink = open_sink(f"tiled://{folder}/?format=png&sources=4&width=256", overlay=False)
    for source in (CAM, SHAPES, USB):
        sink.write(_result(source, 0))
    assert not folder.exists()  # still waiting: a fourth source is planned
    sink.write(_result("csi://0", 0, (255, 255, 255)))
    assert [p.name for p in folder.iterdir()] == ["000000.png"]  # at once, without waiting for a second round
    sink.close()
    assert sink.mosaics == 1  # nothing new since: close adds no mosaic
    mosaic = cv2.imread(str(folder / "000000.png"))
    assert mosaic.shape == (192, 256, 3) and np.array_equal(mosaic[144, 192], (255, 255, 255))


def test_a_source_that_appears_later_grows_the_grid_inside_the_same_canvas(tmp_path: Path) -> None:
    sink = open_sink(f"tiled://{tmp_path}/grid/?format=png&width=256", overlay=False)
    for result in _rounds([CAM, SHAPES], 2):
        sink.write(result)
    sink.write(_result(USB, 0))
    sink.write(_result(CAM, 2))
    sink.close()
    first, *_, last = [cv2.imread(str(p)) for p in sorted((tmp_path / "grid").iterdir())]
    assert first.shape == last.shape == (96, 256, 3)  # 2 x 1 tiles of 128 x 96, then 2 x 2 of 128 x 48
    assert np.array_equal(first[48, 64], COLOURS[CAM]) and np.array_equal(first[48, 192], COLOURS[SHAPES])
    assert [tuple(last[y, x]) for x, y in [(64, 24), (192, 24), (64, 60)]] == [COLOURS[CAM], COLOURS[SHAPES], COLOURS[USB]]


def test_each_tile_carries_the_overlay_of_its_own_result(tmp_path: Path) -> None:
    with open_sink(f"tiled://{tmp_path}/grid/?format=png&width=256") as sink:  # overlay on: latency at the top right
        for result in _rounds([CAM, SHAPES], 1):
            sink.write(result)
    mosaic = cv2.imread(str(tmp_path / "grid" / "000000.png"))
    for x, source in ((0, CAM), (128, SHAPES)):
        assert np.array_equal(mosaic[48, x + 64], COLOURS[source])
        assert any(not np.array_equal(mosaic[y, x + 120], COLOURS[source]) for y in range(4, 20))


def test_a_mosaic_in_a_window_passes_q_on_to_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = _FakeWindows(monkeypatch, keys=[-1, ord("q")], visible=[])
    sink = open_sink("tiled://display://cameras?cols=2")
    for result in (_result(CAM, 0), _result(SHAPES, 0), _result(CAM, 1)):
        sink.write(result)
    assert not sink.stop_requested and windows.calls.count("imshow") == 1
    sink.write(_result(SHAPES, 1))  # the round is complete: the second mosaic shows, and q is pressed
    assert sink.stop_requested and windows.calls.count("imshow") == 2
    sink.close()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("uri", "words"), [
    ("out-{camera}.mp4", ["unknown placeholder {camera}", "the one placeholder is {source}"]),
    ("out-{}.mp4", ["unknown placeholder {}"]),
    ("out-{source.mp4", ["a brace without its pair", "out-{source}.mp4"]),
    ("out-{source}}.jsonl", ["a brace without its pair"]),
    ("{source}/out.mp4", ["only be in the file or folder name", "frames-{source}/"]),
    ("display://{source}", ["one file per source", "only a file or folder sink", "tiled://display"]),
    ("rtsp://server:8554/{source}", ["only a file or folder sink"]),
    ("tiled://out-{source}.mp4", ["only a file or folder sink"]),
    ("tiled://", ["no sink after tiled://", "tiled://out.mp4"]),
    ("tiled://?cols=2", ["no sink after tiled://"]),
    ("tiled://r.jsonl", ["needs a sink that shows pictures", "JsonLinesSink", "tiled://overview.mp4"]),
    ("tiled://o.mp4?cols=0", ["cols='0'", "whole number from 1 to 100"]),
    ("tiled://o.mp4?sources=two", ["sources='two'", "whole number"]),
    ("tiled://o.mp4?width=641", ["width='641'", "even number from 16 to 8192"]),
    ("tiled://o.mp4?height=8", ["height='8'", "even number"]),
    ("tiled://o.mp4?cols=3&sources=2", ["cols=3 is more than sources=2"]),
    ("tiled://o.mp4?cols=50&width=640", ["under 16 pixels wide"]),
    ("tiled://o.mp4?bogus=1", ["unknown option 'bogus'", "fps, fourcc"]),
    ("tiled://ftp://host/o.mp4", ["unknown sink kind ftp://"]),
])
def test_bad_multi_source_uris_are_one_line_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str,
                                                         words: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as info:
        open_sink(uri)
    _one_line(info, *words)
    assert list(tmp_path.iterdir()) == []
