"""The streaming pipeline end to end on the CPU: sources, preprocessing, the model, postprocessing, sinks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from child_processes import child_process
from click.testing import CliRunner

import edgedl
from edgedl.cli.main import main
from edgedl.demo import DETECTOR, demo_source
from edgedl.errors import UsageError
from edgedl.evaluate import DetectionScore
from edgedl.pipeline import Pipeline


def test_stream_yields_every_frame_in_order_with_accurate_boxes(model: edgedl.Model) -> None:
    score = DetectionScore()
    results = list(model.stream(demo_source(frames=24, fps=0)))
    assert [r.frame_id for r in results] == list(range(24))
    for r in results:
        score.add(r.detections, r.frame.truth)
        assert set(r.timings) >= {"preprocess", "infer", "postprocess"}
        assert r.latency_ms >= r.timings["infer"] > 0
        assert r.dropped == 0
        assert r.geometry is not None and (r.geometry.original_width, r.geometry.original_height) == (640, 480)
    assert score.recall > 0.85 and score.precision > 0.85, (score.recall, score.precision)
    labels = {d.label for r in results for d in r.detections}
    assert labels <= {"circle", "square", "triangle", "cross"} and labels


def test_a_stream_makes_the_models_idle_cpu_workers_block(model: edgedl.Model) -> None:
    """Loaded alone, ONNX Runtime's idle workers spin; a stream's own threads need the cores."""
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 256, 256)).astype(np.float32)
    expected = model(x)["output0"]
    assert model.describe()["idle_workers"] == "spin"
    assert len(list(model.stream(demo_source(frames=2, fps=0)))) == 2
    assert model.describe()["idle_workers"] == "block"
    np.testing.assert_array_equal(model(x)["output0"], expected)


def _thread_count_settles(baseline: int, timeout: float = 3.0) -> int:
    deadline = time.monotonic() + timeout
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    return threading.active_count()


def test_leaving_the_loop_early_stops_every_thread(model: edgedl.Model) -> None:
    baseline = threading.active_count()
    for result in model.stream(demo_source(frames=1000, fps=0)):
        if result.frame_id == 3:
            break
    assert _thread_count_settles(baseline) == baseline


def test_a_live_source_drops_oldest_frames_and_counts_every_frame(model: edgedl.Model) -> None:
    """A 200 fps camera into an app that takes 20 ms a frame: frames in = processed + dropped, queues bounded."""
    seen: list[int] = []

    def slow(result: edgedl.Result) -> None:
        seen.append(result.frame_id)
        time.sleep(0.02)

    pipeline = Pipeline(model, demo_source(frames=120, fps=200), on_result=slow, queue_size=2)
    pipeline.start()
    pipeline.join()
    stats = pipeline.stats
    assert stats.dropped > 0
    assert stats.captured == stats.processed + stats.dropped == 120
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert max(stats.max_depth[q] for q in ("preprocessed", "inferred", "results")) <= 2


def test_file_source_never_drops_and_sinks_get_every_frame(model: edgedl.Model, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    from edgedl.sources import open_source

    with open_source(demo_source(frames=30, fps=0)) as stream:
        for frame in stream:
            writer.write(frame.image)
    writer.release()
    out, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    pipeline = Pipeline(model, clip, sink=[out, lines], on_result=lambda r: time.sleep(0.01))
    pipeline.start()
    pipeline.join()
    assert pipeline.stats.processed == 30 and pipeline.stats.dropped == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame_id"] for r in records] == list(range(30))


def test_an_error_in_a_stage_reaches_the_app_and_stops_the_run(model: edgedl.Model) -> None:
    def broken(outputs: dict, ctx: object) -> None:
        raise RuntimeError("postprocessor bug")

    baseline = threading.active_count()
    with pytest.raises(RuntimeError, match="postprocessor bug"):
        list(model.stream(demo_source(frames=50, fps=0), postprocess=broken))
    assert _thread_count_settles(baseline) == baseline


def test_a_custom_postprocessor_is_one_registered_function(model: edgedl.Model, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgedl import postprocess
    from edgedl.postprocess import registry
    from edgedl.results import Prediction

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the name vanishes after this test

    @postprocess.register("count-strong-anchors")
    def count(outputs: dict, ctx: postprocess.PostContext) -> Prediction:
        scores = outputs["output0"][0, 4:]
        return Prediction(outputs={"strong": np.array((scores.max(0) > ctx.conf_threshold).sum())})

    results = list(model.stream(demo_source(frames=3, fps=0), postprocess="count-strong-anchors"))
    assert all(int(r.outputs["strong"]) > 0 for r in results)


def test_bad_streaming_requests_are_one_line_usage_errors(model: edgedl.Model, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="queue_size"):
        Pipeline(model, "synthetic://shapes", queue_size=0)
    with pytest.raises(UsageError, match="max_frames"):
        Pipeline(model, "synthetic://shapes", max_frames=0)
    with pytest.raises(UsageError, match="conf and iou"):
        Pipeline(model, "synthetic://shapes", conf=2.0)
    with pytest.raises(UsageError, match="GPU backend"):
        Pipeline(model, "synthetic://shapes", device_preprocess="gpu")
    with edgedl.load(DETECTOR, backend="onnxruntime") as bare:
        with pytest.raises(UsageError, match="no preprocessing spec") as info:
            Pipeline(bare, "synthetic://shapes")
        assert "\n" not in str(info.value) and "preprocess=" in str(info.value)
        results = list(bare.stream(demo_source(frames=2, fps=0), preprocess="yolo"))
        assert len(results) == 2 and results[0].outputs  # a bare ONNX file has task raw: outputs come back as they are


def _cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stderr


def test_run_command_streams_and_writes_its_summary(detector: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    code, err = _cli(["run", str(detector), "--source", demo_source(frames=12, fps=0), "--sink", str(tmp_path / "r.jsonl"),
                      "--quiet", "--json", str(summary), "--backend", "onnxruntime"])
    assert code == 0, err
    data = json.loads(summary.read_text())
    assert data["frames_processed"] == 12 and data["frames_dropped"] == 0 and data["fps"] > 0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 12


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--source", "nosuchscheme://x"], 2, "nosuchscheme"),
    (["--source", "missing-clip.mp4"], 3, "missing-clip.mp4"),
    (["--source", "synthetic://shapes", "--sink", "out.unknownext"], 2, "out.unknownext"),
    (["--source", "synthetic://shapes", "--max-frames", "0"], 2, "max_frames"),
])
def test_run_command_bad_inputs_give_one_line_and_write_nothing(detector: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                args: list[str], code: int, words: str) -> None:
    monkeypatch.chdir(tmp_path)
    exit_code, err = _cli(["run", str(detector), "--backend", "onnxruntime", *args])
    assert exit_code == code, err
    assert err.count("\n") == 1 and "Traceback" not in err and words in err
    assert list(tmp_path.iterdir()) == []


def test_sigint_stops_run_cleanly_with_a_playable_video(detector: Path, tmp_path: Path) -> None:
    out = tmp_path / "live.mp4"
    with child_process([sys.executable, "-m", "edgedl.cli.main", "run", str(detector), "--backend", "onnxruntime",
                        "--source", "synthetic://shapes?fps=30", "--sink", str(out), "--quiet"],
                       stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*.partial*")) and not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the sink opens its file at the first frame
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    assert ok and frame.shape == (480, 640, 3) and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= 5
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_demo_converts_streams_and_reports_accuracy(tmp_path: Path) -> None:
    code, err = _cli(["demo", "--out", str(tmp_path / "demo"), "--frames", "30", "--fps", "0", "--quiet"])
    assert code == 0, err
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo"), "--frames", "30", "--fps", "0", "--quiet"])
    assert "accuracy: precision" in result.stdout
    precision = float(result.stdout.split("precision ")[1].split(",")[0])
    recall = float(result.stdout.split("recall ")[1].split(" ")[0])
    assert precision > 0.8 and recall > 0.8, result.stdout
    assert int(cv2.VideoCapture(str(tmp_path / "demo" / "demo.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    manifest = json.loads((tmp_path / "demo" / "shapes_detector.edgedl" / "edgedl.json").read_text())
    assert "int8" in {v["precision"] for v in manifest["variants"].values()}
