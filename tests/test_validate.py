"""Agreement metrics: a wrecked small-scale part of an output cannot hide behind a large-scale part."""

from __future__ import annotations

import numpy as np
import pytest

from edgedl.converters.validate import Gate, agreement, detection_decoder, feature_axis, passes, shortfall


def test_feature_axis_picks_the_small_axis_with_enough_values() -> None:
    assert feature_axis((1, 84, 8400)) == 1  # YOLOv8: [N, 4 + C, anchors]
    assert feature_axis((1, 25200, 85)) == 2  # YOLOv5: [N, anchors, 5 + C]
    assert feature_axis((1, 1000)) is None  # classifier logits: nothing to split
    assert feature_axis((1, 4, 2)) is None  # too few values per slice for a cosine


def test_wrecked_scores_fail_even_when_boxes_dominate_the_whole_tensor_cosine() -> None:
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 256, (1, 4, 500))
    scores = rng.uniform(0, 1, (1, 3, 500))
    reference = [{"out": np.concatenate([boxes, scores], axis=1)}]
    noisy = np.concatenate([boxes + rng.normal(0, 0.2, boxes.shape), rng.uniform(0, 1, scores.shape)], axis=1)
    report = agreement(reference, [{"out": noisy}], classify=False)
    assert report["out"]["cosine"] > 0.999  # the whole-tensor view looks perfect…
    assert report["out"]["feature_cosine"] < 0.9 and report["out"]["feature_index"] >= 4  # …the scores are not
    ok, reason = passes(report, Gate())
    assert not ok and "feature" in reason
    clean = agreement(reference, [{"out": reference[0]["out"] * 1.0001}], classify=False)
    assert passes(clean, Gate()) == (True, "passes")


def _yolo_frames(frames: int, objects: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """YOLOv8 tables ``[1, 4+3, 500]``: ``objects`` well-separated boxes a frame scored 0.9, the rest faint."""
    rng = np.random.default_rng(seed)
    tables = []
    for _ in range(frames):
        table = np.zeros((1, 7, 500))
        table[0, :2] = rng.uniform(0, 640, (2, 500))
        table[0, 2:4] = rng.uniform(10, 40, (2, 500))
        table[0, 4:] = rng.uniform(0, 0.05, (3, 500))
        for k, anchor in enumerate(rng.choice(500, objects, replace=False)):
            table[0, :4, anchor] = (60 + 120 * k, 100, 50, 50)  # side by side, never overlapping
            table[0, 4 + k % 3, anchor] = 0.9
        tables.append({"out": table})
    return tables


def _with_scores(frames: list[dict[str, np.ndarray]], change) -> list[dict[str, np.ndarray]]:
    changed = []
    for frame in frames:
        table = frame["out"].copy()
        change(table[0, 4:])
        changed.append({"out": table})
    return changed


DECODE = detection_decoder("detect", [("out", (1, 7, 500))])


def test_a_detector_whose_score_rows_blur_but_whose_detections_hold_passes_on_its_detections() -> None:
    reference = _yolo_frames(8, 4)  # 32 FP32 detections: enough to judge by
    rng = np.random.default_rng(1)
    blurred = _with_scores(reference, lambda s: np.clip(s + rng.normal(0, 0.012, s.shape), 0, 0.2, out=s,
                                                        where=s < 0.5))
    report = agreement(reference, blurred, classify=False, decode=DECODE)["out"]
    assert 0.95 < report["feature_cosine"] < 0.99  # a row-cosine gate alone would refuse this variant
    assert (report["detections"], report["detection_recall"], report["detection_precision"]) == (32, 1.0, 1.0)
    assert passes({"out": report}, Gate()) == (True, "passes")
    assert not passes(agreement(reference, blurred, classify=False), Gate())[0]  # without a decoder: rows decide


def test_a_detector_that_loses_objects_fails_on_its_detections() -> None:
    reference = _yolo_frames(8, 4)
    lost = _with_scores(reference, lambda s: np.minimum(s, 0.1, out=s[:, :], where=np.arange(3)[:, None] == 0))
    report = agreement(reference, lost, classify=False, decode=DECODE)
    assert report["out"]["detection_recall"] == 0.5 and report["out"]["detection_precision"] == 1.0  # class 0: half
    ok, reason = passes(report, Gate())
    assert not ok and "detections agree 0.500 < 0.95" in reason and "of 32 FP32 detections" in reason


def test_a_score_row_that_lost_its_shape_fails_even_when_the_detections_hold() -> None:
    reference = _yolo_frames(12, 2)  # 24 detections, of classes 0 and 1 only: class 2's row never reaches the threshold
    wiped = _with_scores(reference, lambda s: s.__setitem__(2, np.random.default_rng(2).uniform(0, 0.05, s.shape[1])))
    report = agreement(reference, wiped, classify=False, decode=DECODE)
    assert report["out"]["detection_recall"] == report["out"]["detection_precision"] == 1.0
    ok, reason = passes(report, Gate())
    assert not ok and "feature 6 cosine" in reason and "< 0.95" in reason


def test_too_few_detections_to_judge_by_leave_the_row_rule_in_force() -> None:
    reference = _yolo_frames(4, 4)  # 16 detections: one changed box would move the agreement by 6%
    rng = np.random.default_rng(1)
    blurred = _with_scores(reference, lambda s: np.clip(s + rng.normal(0, 0.012, s.shape), 0, 0.2, out=s,
                                                        where=s < 0.5))
    report = agreement(reference, blurred, classify=False, decode=DECODE)
    assert report["out"]["detections"] == 16 and report["out"]["detection_recall"] == 1.0
    ok, reason = passes(report, Gate())
    assert not ok and "< 0.99" in reason


def test_only_a_detector_with_a_built_in_postprocessor_gets_a_decoder() -> None:
    assert detection_decoder("classify", [("logits", (1, 10))]) is None
    assert detection_decoder("detect", [("odd", (1, 3, 3, 3))]) is None  # no built-in reads it: row rule only
    assert detection_decoder("detect", [("boxes", (1, 100, 4)), ("scores", (1, 100, 5))]) is not None  # SSD


def test_a_box_that_only_crosses_the_threshold_is_neither_lost_nor_new() -> None:
    reference = _yolo_frames(8, 4)
    for frame in reference[:4]:  # FP32 scores one object a frame just above the runtime's 0.25...
        table = frame["out"][0]
        table[4:, np.argmax(table[4:].max(axis=0))] *= 0.27 / 0.9
    # ...and the variant just below it, while another, faint anchor rises just above it
    crossed = _with_scores(reference, lambda s: np.multiply(s, 0.23 / 0.27, out=s, where=(s > 0.26) & (s < 0.28)))
    crossed[5]["out"][0, 4, 0] = 0.27
    report = agreement(reference, crossed, classify=False, decode=DECODE)["out"]
    assert report["detections"] == 28  # the four borderline boxes are not judged
    assert report["detection_recall"] == report["detection_precision"] == 1.0
    lost = _with_scores(reference, lambda s: np.multiply(s, 0.1, out=s, where=s > 0.5))  # confident ones are
    assert agreement(reference, lost, classify=False, decode=DECODE)["out"]["detection_recall"] == 0.0


def test_shortfall_is_the_largest_gap_from_full_agreement() -> None:
    assert shortfall({"a": {"cosine": 1.0}}) == 0.0
    report = {"a": {"cosine": 0.999, "feature_cosine": 0.9, "top1_agreement": 1.0},
              "b": {"cosine": 0.99, "detection_recall": 0.8, "detection_precision": 0.95}}
    assert shortfall(report) == pytest.approx(0.2)
