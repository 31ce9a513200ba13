"""Agreement metrics: a wrecked small-scale part of an output cannot hide behind a large-scale part."""

from __future__ import annotations

import numpy as np
import pytest

from edgedl.converters.validate import (
    Gate,
    agreement,
    detection_decoder,
    feature_axis,
    missing_evidence,
    passes,
    require_evidence,
    shortfall,
)
from edgedl.errors import CalibrationError


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


def _faint_yolo_table(rng: np.random.Generator) -> np.ndarray:
    """A YOLOv8 table ``[1, 4+3, 500]`` of scattered boxes, every class scored faintly (below 0.05)."""
    table = np.zeros((1, 7, 500))
    table[0, :2] = rng.uniform(0, 640, (2, 500))
    table[0, 2:4] = rng.uniform(10, 40, (2, 500))
    table[0, 4:] = rng.uniform(0, 0.05, (3, 500))
    return table


def _yolo_frames(frames: int, objects: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """YOLOv8 tables ``[1, 4+3, 500]``: ``objects`` well-separated boxes a frame scored 0.9, the rest faint."""
    rng = np.random.default_rng(seed)
    tables = []
    for _ in range(frames):
        table = _faint_yolo_table(rng)
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


def test_a_rare_class_whose_score_row_is_noise_is_not_judged_by_its_cosine() -> None:
    reference = _yolo_frames(12, 2)  # 24 detections, of classes 0 and 1 only: class 2's row never reaches the threshold
    noise = _with_scores(reference, lambda s: s.__setitem__(2, np.random.default_rng(2).uniform(0, 0.05, s.shape[1])))
    report = agreement(reference, noise, classify=False, decode=DECODE)["out"]
    assert report["detection_recall"] == report["detection_precision"] == 1.0
    assert report["absent_feature_index"] == 6 and report["absent_feature_cosine"] < 0.95  # faint noise either way…
    assert report["feature_cosine"] > 0.999  # …while the rows of boxes and of the classes present keep their shape
    assert passes({"out": report}, Gate()) == (True, "passes")


def test_a_wiped_score_row_still_fails_even_when_its_class_is_absent() -> None:
    reference = _yolo_frames(12, 2)
    wiped = _with_scores(reference, lambda s: s.__setitem__(2, 0.0))
    ok, reason = passes(agreement(reference, wiped, classify=False, decode=DECODE), Gate())
    assert not ok and "feature 6" in reason and "wiped" in reason


def _yolo_anchor_frames(frames: int, objects: int, anchors: int = 8, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """YOLOv8 tables ``[1, 4+3, 500]`` as a trained head gives them: each object lights ``anchors`` neighbouring
    anchors (boxes within a pixel or two, scores 0.9 down to 0.55); every other anchor is faint noise."""
    rng = np.random.default_rng(seed)
    tables = []
    for _ in range(frames):
        table = _faint_yolo_table(rng)
        lit = rng.choice(500, objects * anchors, replace=False).reshape(objects, anchors)
        for k, group in enumerate(lit):
            table[0, :4, group] = np.array([60 + 120 * k, 100, 50, 50]) + rng.normal(0, 1, (anchors, 4))
            table[0, 4 + k % 2, group] = np.linspace(0.9, 0.55, anchors)  # classes 0 and 1; class 2 never
        tables.append({"out": table})
    return tables


def test_few_detections_are_judged_by_the_confident_anchors_not_by_noise_rows() -> None:
    reference = _yolo_anchor_frames(2, 2)  # 4 detections, too few to judge by, from 32 confident anchors
    rng = np.random.default_rng(1)
    faint = _with_scores(reference, lambda s: np.copyto(s, rng.uniform(0, 0.05, s.shape), where=s < 0.5))
    report = agreement(reference, faint, classify=False, decode=DECODE)["out"]
    assert report["detections"] == 4 and report["anchors"] == 32 and report["anchors_kept"] == 1.0
    assert report["absent_feature_cosine"] < 0.9  # class 2's row: noise against noise
    assert passes({"out": report}, Gate()) == (True, "passes")
    assert not passes(agreement(reference, faint, classify=False), Gate())[0]  # without a decoder: rows decide


def test_confident_anchors_must_keep_their_scores_and_boxes() -> None:
    reference = _yolo_anchor_frames(2, 2)
    dimmed = _with_scores(reference, lambda s: np.subtract(s, 0.15, out=s, where=s > 0.72))  # 16 of 32 anchors
    report = agreement(reference, dimmed, classify=False, decode=DECODE)
    ok, reason = passes(report, Gate())
    assert not ok and "confident anchors kept 0.500 < 0.95" in reason and "of 32 FP32 anchors" in reason
    moved = [{"out": f["out"].copy()} for f in reference]
    for frame in moved:
        frame["out"][0, 0] += 8.0  # every box 8 px to the right: IoU 0.72 for a 50 px box
    assert agreement(reference, moved, classify=False, decode=DECODE)["out"]["anchor_box_iou"] < 0.8
    assert not passes(agreement(reference, moved, classify=False, decode=DECODE), Gate())[0]
    invented = _with_scores(reference, lambda s: s.__setitem__((2, slice(0, 40)), 0.6))  # class 2 appears
    report = agreement(reference, invented, classify=False, decode=DECODE)["out"]
    assert report["anchors"] == 32 and report["anchors_kept"] < 0.95  # judged though FP32 is faint there


def test_a_wiped_score_output_fails_on_the_anchors() -> None:
    reference = _yolo_anchor_frames(2, 2)
    wiped = _with_scores(reference, lambda s: s.__setitem__(slice(None), 0.0))
    ok, reason = passes(agreement(reference, wiped, classify=False, decode=DECODE), Gate())
    assert not ok and "confident anchors kept 0.000" in reason


def test_too_few_confident_anchors_ask_for_more_data() -> None:
    reference = _yolo_anchor_frames(1, 1)  # one object: 8 confident anchors
    report = agreement(reference, reference, classify=False, decode=DECODE)
    assert "8 anchor(s)" in (missing_evidence(report) or "")
    ok, reason = passes(report, Gate())  # not even FP32 itself passes: there is nothing to judge by
    assert not ok and reason.startswith("not enough evidence")
    with pytest.raises(CalibrationError) as info:
        require_evidence(reference, False, DECODE, "--calib-data")
    message = str(info.value)
    assert "\n" not in message and "1 held-out sample(s)" in message and "more, representative --calib-data" in message
    require_evidence(_yolo_anchor_frames(2, 2), False, DECODE, "--calib-data")  # 32 anchors: enough


def _maps(frames: int, text: bool, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Text-detector maps ``[1, 1, 64, 64]``: a faint background and, with ``text``, a 0.95 line of text a frame."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(frames):
        prob = rng.uniform(0, 0.02, (1, 1, 64, 64))
        if text:
            row = rng.integers(5, 50)
            prob[0, 0, row:row + 8, 10:54] = 0.95
        maps.append({"prob": prob})
    return maps


def test_a_probability_map_is_judged_where_fp32_says_yes() -> None:
    reference = _maps(3, text=True)
    rng = np.random.default_rng(1)
    noisy = [{"prob": np.where(r["prob"] > 0.5, r["prob"] - 0.01, rng.uniform(0, 0.02, r["prob"].shape))}
             for r in reference]
    report = agreement(reference, noisy, classify=False)["prob"]
    assert report["map_pixels"] == 3 * 8 * 44 and report["map_iou"] == 1.0 and report["map_error"] < 0.02
    assert passes({"prob": report}, Gate()) == (True, "passes")  # the background's noise is not judged
    thinner = [{"prob": np.where((r["prob"] > 0.5) & (np.arange(64) % 4 == 0)[:, None], 0.1, r["prob"])}
               for r in reference]
    ok, reason = passes(agreement(reference, thinner, classify=False), Gate())
    assert not ok and "map IoU 0.750 < 0.95" in reason
    wiped = [{"prob": np.zeros_like(r["prob"])} for r in reference]
    ok, reason = passes(agreement(reference, wiped, classify=False), Gate())
    assert not ok and "map IoU 0.000" in reason


def test_a_page_whose_text_is_lost_counts_as_a_page_not_as_its_few_pixels() -> None:
    reference = _maps(9, text=True)
    for r in reference[1:]:
        r["prob"][0, 0, 2:62, 2:62] = 0.95  # eight pages full of text
    page_lost = [{"prob": np.zeros_like(r["prob"]) if i == 0 else r["prob"]} for i, r in enumerate(reference)]
    report = agreement(reference, page_lost, classify=False)["prob"]
    pixels_kept = sum(int((r["prob"] > 0.3).sum()) for r in reference[1:]) / report["map_pixels"]
    assert pixels_kept > 0.98  # pooled over pixels, the lost page would hardly count
    assert report["map_worst_iou"] == 0.0 and report["map_iou"] == pytest.approx(8 / 9)
    ok, reason = passes({"prob": report}, Gate())
    assert not ok and "map IoU 0.889" in reason


def test_maps_with_nothing_said_yes_to_ask_for_more_data() -> None:
    empty = _maps(3, text=False)  # held-out photos with no text in them
    with pytest.raises(CalibrationError) as info:
        require_evidence(empty, False, None, "--data")
    assert "FP32's map exceeds 0.3 at 0 pixel(s)" in str(info.value) and "--data" in str(info.value)
    assert not passes(agreement(empty, empty, classify=False), Gate())[0]
    logits = [{"prob": m["prob"] * 40 - 20} for m in empty]  # not probabilities: judged by cosine as before
    assert "map_pixels" not in agreement(logits, logits, classify=False)["prob"]


def test_a_classifier_keeps_its_top_k_classes() -> None:
    rng = np.random.default_rng(0)
    reference = [{"logits": np.sort(rng.normal(0, 1, (1, 20)))[:, ::-1].copy()} for _ in range(10)]
    swapped = [{"logits": r["logits"].copy()} for r in reference]
    for s in swapped:
        s["logits"][0, [4, 10]] = s["logits"][0, [10, 4]]  # the fifth class falls out of the top five
    report = agreement(reference, swapped, classify=True)
    assert report["logits"]["top1_agreement"] == 1.0 and report["logits"]["top_k"] == 5
    assert report["logits"]["topk_agreement"] == 0.8
    ok, reason = passes(report, Gate(min_cosine=0.9))  # the swap moves the logits' cosine to 0.96 too
    assert not ok and "top-5 agreement 0.800 < 0.9" in reason
    assert "top_k" not in agreement([{"l": np.ones((1, 3))}], [{"l": np.ones((1, 3))}], classify=True)["l"]


def test_only_a_detector_with_a_built_in_postprocessor_gets_a_decoder() -> None:
    assert detection_decoder("classify", [("logits", (1, 10))]) is None
    assert detection_decoder("detect", [("odd", (1, 3, 3, 3))]) is None  # no built-in reads it: row rule only
    ssd = detection_decoder("detect", [("boxes", (1, 100, 4)), ("scores", (1, 100, 5))])
    assert ssd is not None and not ssd.reads_anchors  # SSD: its detections, else the row rule


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
