"""Tracking: track ids stay with their objects, per source; the ground truth it is scored against; overlay and JSON."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgedl import overlay
from edgedl.errors import MissingDependencyError, UsageError
from edgedl.results import Detections, Frame, Prediction, Result
from edgedl.sinks.jsonl import to_record
from edgedl.sources import open_source
from edgedl.tracking import TRACKERS, SourceTrackers
from edgedl.tracking.score import TrackingScore, summarize

LABELS = ["circle", "square", "triangle", "cross"]
FPS = 30.0


def _shapes(frames: int, seed: int, objects: int = 3) -> list[np.ndarray]:
    with open_source(f"synthetic://shapes?fps=0&frames={frames}&objects={objects}&seed={seed}") as stream:
        return [frame.truth for frame in stream]


def _detections_of(truth: np.ndarray, rng: np.random.Generator) -> Detections:
    """What a decent detector makes of the drawn shapes: jittered boxes, now and then a miss, an unsure box, or a
    second box of another class on the same object."""
    boxes, scores, classes = [], [], []
    for cls, *box, _ in truth.tolist():
        x1, y1, x2, y2 = box
        size = np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1])
        draw = rng.random()
        if draw < 0.05:
            continue  # missed
        boxes.append(np.array(box) + rng.normal(0, 0.03, 4) * size)
        scores.append(rng.uniform(0.12, 0.3) if draw < 0.15 else rng.uniform(0.6, 0.99))
        classes.append(int(cls))
        if draw > 0.95:
            boxes.append(np.array(box) + rng.normal(0, 0.05, 4) * size)
            scores.append(rng.uniform(0.3, 0.7))
            classes.append((int(cls) + 1) % len(LABELS))
    return Detections(np.array(boxes).reshape(-1, 4), np.array(scores), np.array(classes), LABELS)


def _prediction(boxes: list[list[float]], scores: list[float] | None = None) -> Prediction:
    scores = scores if scores is not None else [0.9] * len(boxes)
    return Prediction(detections=Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores),
                                            np.zeros(len(boxes)), LABELS))


def _fresh_ids_every_frame(prediction: Prediction, frame: int) -> Prediction:
    """A broken tracker: every detection gets a new id on every frame."""
    dets = prediction.detections
    ids = frame * 100 + np.arange(len(dets))
    return Prediction(detections=Detections(dets.boxes, dets.scores, dets.class_ids, dets.labels, track_ids=ids))


@pytest.mark.parametrize("name", TRACKERS)
def test_track_ids_stay_with_their_objects_over_a_synthetic_stream(name: str) -> None:
    truths = _shapes(120, seed=3, objects=4)
    rng = np.random.default_rng(0)
    predictions = [Prediction(detections=_detections_of(truth, rng)) for truth in truths]
    trackers = SourceTrackers(name)
    tracked, broken = TrackingScore(), TrackingScore()
    for i, (prediction, truth) in enumerate(zip(predictions, truths, strict=True)):
        tracked.add(trackers.update("cam", prediction, i / FPS).detections, truth)
        broken.add(_fresh_ids_every_frame(prediction, i).detections, truth)
    good, bad = summarize([tracked]), summarize([broken])
    assert good.idf1 >= 0.9 and good.mota >= 0.8, good
    assert good.switches <= 2, good
    assert bad.idf1 < 0.2, bad  # the bound means something: ids that do not stay with their objects fail it


def test_each_source_has_its_own_tracks_and_ids() -> None:
    trackers = SourceTrackers("bytetrack")
    left, right = [[10, 10, 50, 50]], [[300, 200, 340, 240], [100, 100, 160, 160]]
    got: dict[str, list[list[int]]] = {"left": [], "right": []}
    for i in range(6):
        shift = [2.0 * i, 0, 2.0 * i, 0]
        for source, boxes in (("left", left), ("right", right)):
            moved = [list(np.add(box, shift)) for box in boxes]
            got[source].append(trackers.update(source, _prediction(moved), i / FPS).detections.track_ids.tolist())
    assert got["left"][-1] == [1]  # ids count from 1 in each source
    assert sorted(got["right"][-1]) == [1, 2]
    assert all(ids == got["right"][-1] for ids in got["right"][2:])  # confirmed on the second frame, then kept
    assert trackers.sources == ("left", "right")
    trackers.remove("left")
    assert trackers.sources == ("right",)
    first = trackers.update("left", _prediction(left), 1.0).detections
    assert first.track_ids.tolist() == [-1] and next(iter(first)).track_id is None  # a fresh start: not yet confirmed


def test_unsure_detections_are_reported_only_when_they_continue_a_track() -> None:
    trackers = SourceTrackers("bytetrack", conf=0.25)
    assert trackers.detector_conf == pytest.approx(0.1) and SourceTrackers("sort", conf=0.25).detector_conf == 0.25
    box = [100, 100, 140, 140]
    for i in range(3):
        trackers.update("cam", _prediction([box]), i / FPS)
    unsure = trackers.update("cam", _prediction([box, [400, 300, 440, 340]], [0.15, 0.15]), 3 / FPS).detections
    assert unsure.track_ids.tolist() == [1]  # the unsure box on the tracked object stays; the stray one is dropped
    assert unsure.boxes.tolist() == [box]
    fresh = trackers.update("cam", _prediction([box, [400, 300, 440, 340]], [0.9, 0.9]), 4 / FPS).detections
    assert fresh.track_ids.tolist() == [1, -1]  # a new object is reported at once, untracked until confirmed


def test_an_unknown_tracker_or_option_is_one_line_that_names_the_choices() -> None:
    with pytest.raises(UsageError) as exc:
        SourceTrackers("deepsort")
    text = str(exc.value)
    assert "\n" not in text and "deepsort" in text and all(name in text for name in TRACKERS)
    assert exc.value.exit_code != 0
    with pytest.raises(UsageError, match="lost_seconds.*lost_s"):
        SourceTrackers("bytetrack", lost_seconds=2)
    with pytest.raises(UsageError, match="high=1.5"):
        SourceTrackers("bytetrack", high=1.5)


def test_ground_truth_ids_stay_with_the_same_shape_from_frame_to_frame() -> None:
    truths = _shapes(40, seed=11, objects=5)
    ids = truths[0][:, 5]
    assert truths[0].shape[1] == 6 and sorted(ids.tolist()) == list(range(len(ids)))
    for before, after in zip(truths, truths[1:], strict=False):
        assert np.array_equal(after[:, 5], ids) and np.array_equal(after[:, 0], before[:, 0])  # same object, same class
        centres = lambda t: (t[:, 1:3] + t[:, 3:5]) / 2  # noqa: E731
        assert np.abs(centres(after) - centres(before)).max() < 10  # a shape moves a few pixels a frame, never jumps


def test_overlay_draws_track_ids_and_trails_behind_tracked_objects() -> None:
    image = np.full((240, 320, 3), 40, np.uint8)
    trails = overlay.Trails()
    for i in range(10):  # one object moving right along y = 120
        x = 40 + 12 * i
        dets = Detections(np.array([[x, 100, x + 40, 140]]), np.array([0.9]), np.array([1]), LABELS, track_ids=np.array([7]))
        drawn = overlay.draw(image, dets, trails=trails)
    assert trails.points(7).tolist()[0] == [60, 120] and len(trails.points(7)) == 10
    changed = np.abs(drawn.astype(int) - image).max(axis=2) > 0
    assert changed[119:122, 65:140].any(axis=0).all()  # the trail runs through the earlier centres
    untracked = Detections(dets.boxes, dets.scores, dets.class_ids, LABELS)
    tag = (slice(70, 100), slice(148, 260))  # above the box: where its tag is written
    assert not np.array_equal(overlay.draw(image, untracked)[tag], overlay.draw(image, dets)[tag])  # "#7" in the tag


def test_trails_forget_tracks_that_are_gone() -> None:
    trails = overlay.Trails(length=3)
    seen = Detections(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0]), track_ids=np.array([1]))
    trails.add(seen)
    for _ in range(3):
        trails.add(Detections.empty())
    assert len(trails.points(1)) == 0


def test_detections_carry_track_ids_and_json_records_them() -> None:
    plain = Detections(np.array([[0, 0, 10, 10]]), np.array([0.5]), np.array([0]), LABELS)
    assert plain.track_ids.tolist() == [-1] and plain[0].track_id is None
    with pytest.raises(ValueError):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros(2), LABELS, track_ids=np.zeros(1))
    dets = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0.9, 0.8]), np.array([0, 1]), LABELS,
                      track_ids=np.array([4, -1]))
    assert [d.track_id for d in dets] == [4, None]
    result = Result(Frame(np.zeros((40, 40, 3), np.uint8), 0, 1.0, "synthetic://shapes"), Prediction(detections=dets),
                    None, {}, 1.0, 0)
    records = to_record(result)["detections"]
    assert records[0]["track_id"] == 4 and "track_id" not in records[1]


def test_tracking_metrics_without_motmetrics_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "motmetrics", None)  # import motmetrics now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"edgedl\[tracking-metrics\]"):
        TrackingScore()
