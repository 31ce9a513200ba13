"""Agreement metrics: a wrecked small-scale part of an output cannot hide behind a large-scale part."""

from __future__ import annotations

import numpy as np

from edgedl.converters.validate import Gate, agreement, feature_axis, passes


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
