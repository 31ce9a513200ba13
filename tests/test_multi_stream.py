"""Several sources through one model: fair batches, results back to their sources in order, sources that
fail alone, sources added and removed while the pipeline runs, live metrics over loopback."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fake_sources import HANG, FakeDevice, frames
from tiny import tiny_classifier

import edgedl
from edgedl.batching import SourceMux, split, stack
from edgedl.errors import UsageError
from edgedl.pipeline import Pipeline
from edgedl.sources import open_source

SHAPES = "synthetic://shapes?fps=0&frames={frames}&seed={seed}&width=320&height=240"


def shapes(seed: int, count: int = 12) -> str:
    return SHAPES.format(frames=count, seed=seed)


def by_source(results: list) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for result in results:
        grouped.setdefault(result.source, []).append(result)
    return grouped


def test_three_sources_share_batches_and_every_result_goes_back_to_its_source_in_order(model: edgedl.Model) -> None:
    uris = [shapes(seed) for seed in range(3)]
    pipeline = Pipeline(model, uris, batch_size=3, batch_wait_ms=50)
    results = list(pipeline.results())
    grouped = by_source(results)
    assert sorted(grouped) == sorted(uris)
    for uri in uris:
        assert [r.frame_id for r in grouped[uri]] == list(range(12)), uri
    assert max(pipeline.stats.batch_sizes) > 1, pipeline.stats.batch_sizes  # the model really ran batches
    summary = pipeline.stats.summary()
    assert set(summary["sources"]) == set(uris) and all(s["frames_processed"] == 12 for s in summary["sources"].values())
    assert summary["frames_processed"] == 36 and summary["frames_captured"] == 36

    # A batched frame's detections are those of the same frame run alone.
    alone = {r.frame_id: r for r in Pipeline(model, uris[1], batch_size=1).results()}
    for result in grouped[uris[1]]:
        other = alone[result.frame_id].detections
        assert len(result.detections) == len(other)
        np.testing.assert_allclose(result.detections.boxes, other.boxes, rtol=1e-4, atol=1e-3)


def test_a_source_that_hangs_does_not_hold_the_others_back(model: edgedl.Model, fake: list) -> None:
    stuck = FakeDevice(frames(2) + [HANG])
    fake.append(stuck)
    events: list = []
    pipeline = Pipeline(model, {"stuck": stuck.uri, "live": shapes(7, 20)}, batch_size=2, on_event=events.append,
                        source_options={"read_timeout": 0.3, "reconnect": False})
    seen = by_source(list(pipeline.results()))
    assert [r.frame_id for r in seen["live"]] == list(range(20)), "the healthy source ran to its end"
    assert len(seen["stuck"]) == 2 and {e.source for e in events if e.kind == "stalled"} == {"stuck"}


def test_one_source_that_cannot_open_is_reported_and_the_others_run(model: edgedl.Model) -> None:
    events: list = []
    results = list(Pipeline(model, ["missing-clip.mp4", shapes(1, 5)], on_event=events.append).results())
    assert [r.source for r in results] == [shapes(1, 5)] * 5
    assert [(e.source, e.kind) for e in events if e.kind == "unavailable"] == [("missing-clip.mp4", "unavailable")]
    with pytest.raises(edgedl.EdgeDLError, match="missing-clip.mp4"):
        Pipeline(model, ["missing-clip.mp4", "missing-too.mp4"]).start()


def test_sources_are_added_and_removed_while_it_runs(model: edgedl.Model) -> None:
    first = "synthetic://shapes?fps=60&width=320&height=240&seed=3"
    later = shapes(4, 6)
    results: list = []
    ready = threading.Event()

    def collect(result) -> None:
        results.append(result)
        ready.set()

    pipeline = Pipeline(model, first, on_result=collect).start()
    try:
        assert ready.wait(20)
        assert pipeline.add_source(later, name="later") == "later"
        with pytest.raises(UsageError, match="already in this pipeline"):
            pipeline.add_source(shapes(5), name="later")
        deadline = time.monotonic() + 20
        while sum(r.source == "later" for r in results) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        pipeline.remove_source(first)
        assert pipeline.sources == ["later"]
        with pytest.raises(UsageError, match="no source 'nope'"):
            pipeline.remove_source("nope")
        assert pipeline.join(20), "removing the last source ends the run"
    finally:
        pipeline.stop()
    assert [r.frame_id for r in results if r.source == "later"] == list(range(6))
    assert pipeline.stats.source(first).processed > 0


def test_sources_and_batch_sizes_that_cannot_work_are_refused(model: edgedl.Model, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no source was given"):
        Pipeline(model, [])
    with pytest.raises(UsageError, match="given twice"):
        Pipeline(model, [shapes(0), shapes(0)])
    with pytest.raises(UsageError, match="batch size must be a whole number"):
        Pipeline(model, shapes(0), batch_size=0)
    fixed = edgedl.convert(tiny_classifier(tmp_path / "fixed.onnx", batch=1), tmp_path / "fixed.edgedl",
                           preprocess={"preset": "imagenet"})
    with edgedl.load(fixed.path, backend="onnxruntime") as one:
        with pytest.raises(UsageError, match="takes batches of exactly 1 frames, not 4.*--dynamic-batch"):
            Pipeline(one, [shapes(0), shapes(1)], batch_size=4)
        results = list(Pipeline(one, [shapes(0, 3), shapes(1, 3)]).results())  # batch 1 by default: still runs
        assert len(results) == 6


def test_model_stream_takes_a_list_of_sources(model: edgedl.Model) -> None:
    results = list(model.stream([shapes(0, 4), shapes(1, 4)]))
    assert sorted({r.source for r in results}) == sorted([shapes(0, 4), shapes(1, 4)]) and len(results) == 8


def test_metrics_are_served_over_loopback_while_it_runs(model: edgedl.Model) -> None:
    scraped: list[str] = []

    def scrape(result) -> None:
        if not scraped and result.frame_id >= 3:
            with urllib.request.urlopen(pipeline.metrics_url, timeout=5) as response:
                scraped.append(response.read().decode())

    pipeline = Pipeline(model, {"a": shapes(0, 8), "b": shapes(1, 8)}, on_result=scrape, metrics_port=0)
    pipeline.start()
    assert pipeline.join(60)
    text = scraped[0]
    assert 'edgedl_frames_processed_total{source="a"}' in text and 'edgedl_frames_captured_total{source="b"}' in text
    assert "edgedl_batch_size_count" in text and 'edgedl_stage_latency_seconds_bucket{le="0.001",source="a"' in text


def test_the_mux_rotates_and_never_waits_for_a_source_with_nothing_ready() -> None:
    with open_source(shapes(0, 4)) as a, open_source(shapes(1, 4)) as b:
        mux = SourceMux()
        mux.add("a", a)
        mux.add("b", b)
        time.sleep(0.3)  # both have frames queued
        first = mux.gather(2, wait_s=0.0, timeout=1.0)
        second = mux.gather(2, wait_s=0.0, timeout=1.0)
        assert [n for n, _ in first] == ["a", "b"] and [n for n, _ in second] == ["b", "a"]
        mux.remove("b")
        started = time.monotonic()
        rest = mux.gather(4, wait_s=0.2, timeout=1.0)
        assert {n for n, _ in rest} == {"a"} and time.monotonic() - started < 1.0


def test_a_batch_never_waits_for_a_next_frame_of_a_source_already_in_it(model: edgedl.Model) -> None:
    from edgedl.stream_setup import StreamSetup
    from edgedl.vocabulary import MAX_BATCH

    with open_source(shapes(0, 8)) as a:
        mux = SourceMux()
        mux.add("a", a)
        time.sleep(0.3)  # a backlog of decoded frames (open_source queues up to 4)
        started = time.monotonic()
        taken = mux.gather(MAX_BATCH, wait_s=5.0, timeout=10.0)
        assert time.monotonic() - started < 2.5, "waited for a frame of the only source"
        assert 2 <= len(taken) <= 4 and [f.index for _, f in taken] == list(range(len(taken)))
    setup = StreamSetup.for_model(model)
    assert setup.fixed_batch is None and setup.batch_size(None) == MAX_BATCH
    images = [np.zeros((240, 320, 3), np.uint8)] * 3
    assert setup.preprocess_batch(images)[0].shape[0] == 3  # a dynamic batch runs the frames at hand, unpadded


class _Queued:
    """A stream stand-in with frames already queued and a queue policy."""

    def __init__(self, policy: str, count: int) -> None:
        from edgedl.results import Frame

        self.policy, self.ended = policy, False
        self.frames = [Frame(np.zeros((2, 2, 3), np.uint8), i, 0.0) for i in range(count)]

    def read(self, timeout: float | None = None):
        return self.frames.pop(0) if self.frames else None

    def watch(self, event: threading.Event) -> None:
        pass

    def unwatch(self, event: threading.Event) -> None:
        pass


def test_a_live_camera_gives_one_frame_a_batch_and_a_file_its_backlog() -> None:
    mux = SourceMux()
    mux.add("camera", _Queued("latest", 3))
    mux.add("file", _Queued("block", 3))
    taken = mux.gather(6, wait_s=0.0, timeout=1.0)
    assert sorted(name for name, _ in taken) == ["camera", "file", "file", "file"]


def test_stack_pads_and_split_drops_the_padding() -> None:
    rows = [np.full((1, 2), i, np.float32) for i in range(3)]
    batch = stack(rows, 4)
    assert batch.shape == (4, 2) and batch[3].tolist() == [0, 0]
    parts = split({"y": batch * 2}, 3)
    assert [p["y"].tolist() for p in parts] == [[[0, 0]], [[2, 2]], [[4, 4]]]
    with pytest.raises(UsageError, match="not one row per frame"):
        split({"y": np.zeros((2, 3))}, 3)


def test_named_sources_get_a_file_each_and_a_tiled_overview(model: edgedl.Model, tmp_path: Path) -> None:
    import json

    import cv2

    sinks = [str(tmp_path / "out-{source}.jsonl"), f"tiled://{tmp_path / 'overview.avi'}?cols=2&width=320"]
    Pipeline(model, {"door": shapes(0, 6), "yard": shapes(1, 6)}, sinks, on_result=lambda r: None).start().join()
    for name in ("door", "yard"):
        records = [json.loads(line) for line in (tmp_path / f"out-{name}.jsonl").read_text().splitlines()]
        assert [r["frame_id"] for r in records] == list(range(6)) and {r["source"] for r in records} == {name}
    overview = cv2.VideoCapture(str(tmp_path / "overview.avi"))
    ok, image = overview.read()
    assert ok and image.shape[1] == 320


def test_tracking_keeps_ids_with_objects_per_source(model: edgedl.Model) -> None:
    from edgedl.tracking.score import TrackingScore, summarize

    uris = [shapes(seed, 60) for seed in (0, 2)]
    scores = {uri: TrackingScore() for uri in uris}
    for result in model.stream(uris, tracker="bytetrack", batch_size=2):
        scores[result.source].add(result.detections, result.frame.truth)
        tracked = result.detections.track_ids[result.detections.track_ids >= 0]
        assert len(set(tracked.tolist())) == len(tracked), "an id names one object per frame"
    for uri, score in scores.items():
        assert summarize([score]).idf1 >= 0.8, uri  # fresh ids every frame would score near 0
    with pytest.raises(UsageError, match="unknown tracker 'deepsort'"):
        Pipeline(model, shapes(0), tracker="deepsort")


def _run(args: list[str]) -> tuple[int, str]:
    from click.testing import CliRunner

    from edgedl.cli.main import main

    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.stderr


def test_run_command_takes_several_named_sources_tracks_and_reports_each(detector: Path, tmp_path: Path) -> None:
    import json

    summary = tmp_path / "summary.json"
    code, err = _run([str(detector), "--backend", "onnxruntime", "--source", f"door={shapes(0, 10)}", "--source",
                      f"yard={shapes(1, 10)}", "--tracker", "ByteTrack", "--batch-size", "2", "--metrics-port", "0",
                      "--sink", str(tmp_path / "r-{source}.jsonl"), "--quiet", "--json", str(summary)])
    assert code == 0, err
    data = json.loads(summary.read_text())
    assert data["frames_processed"] == 20 and set(data["sources"]) == {"door", "yard"}
    assert "source door" in err and "metrics at http://127.0.0.1:" in err
    records = [json.loads(line) for line in (tmp_path / "r-yard.jsonl").read_text().splitlines()]
    assert len(records) == 10 and any("track_id" in d for r in records for d in r["detections"])


def test_run_command_refuses_what_cannot_work_in_one_line(detector: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.chdir(tmp_path)
    base = [str(detector), "--backend", "onnxruntime", "--quiet"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            (["--source", shapes(0), "--source", shapes(0)], "given twice"),
            (["--source", shapes(0), "--tracker", "deepsort"], "deepsort"),
            (["--source", shapes(0), "--metrics-port", str(port)], f"metrics port {port} is in use"),
            (["--source", shapes(0), "--batch-size", "0"], "batch size must be a whole number"),
        ]
        for args, words in cases:
            code, err = _run([*base, *args])
            errors = [line for line in err.splitlines() if line.startswith(("Error:", "edgedl: error:"))]
            assert code == 2 and len(errors) == 1 and words in errors[0] and "Traceback" not in err, (args, err)
    assert list(tmp_path.iterdir()) == []
