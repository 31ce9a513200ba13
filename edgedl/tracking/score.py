"""Tracking quality against ground truth with object ids: MOTA, IDF1 and identity switches, by motmetrics.

    score = TrackingScore()
    for result in results:                                   # one source's stream, in frame order
        score.add(result.detections, result.frame.truth)     # truth [k, 6]: class, x1, y1, x2, y2, object id
    print(summarize([score]).idf1)

A tracked detection (track id 0 or more) is a hypothesis; it matches an object when their IoU is
at least ``iou`` (0.5, as in the MOT Challenge). Untracked detections are left out: they carry no
identity to score. MOTA counts misses, false tracks and identity switches against the number of
objects; IDF1 is the share of detections matched to the right object under the best one-to-one
pairing of track ids with object ids, so it drops when an object's track id changes or a track
wanders between objects. The IoUs are computed here (:func:`edgedl.evaluate.box_iou`) and given to
motmetrics as distances, which keeps clear of its ``iou_matrix`` (it calls ``np.asfarray``,
removed in NumPy 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedl.errors import MissingDependencyError
from edgedl.evaluate import box_iou
from edgedl.results import Detections


def _motmetrics() -> Any:
    try:
        import motmetrics
    except ImportError:
        raise MissingDependencyError("tracking metrics need the motmetrics package, which is not installed",
                                     fix='pip install "edgedl[tracking-metrics]"') from None
    return motmetrics


@dataclass(frozen=True)
class TrackingSummary:
    """Scores over one or more streams (``mota`` and ``idf1`` are fractions, at most 1; MOTA can go below 0)."""

    mota: float
    idf1: float
    switches: int
    false_positives: int
    misses: int
    objects: int
    frames: int


class TrackingScore:
    """One stream's tracked detections against its ground truth, frame by frame."""

    def __init__(self, iou: float = 0.5) -> None:
        self.iou = iou
        self.accumulator = _motmetrics().MOTAccumulator(auto_id=True)

    def add(self, detections: Detections, truth: np.ndarray) -> None:
        """Score one frame: ``truth`` ``[k, 6]`` rows of class, x1, y1, x2, y2, object id (as ``synthetic://shapes`` gives)."""
        truth = np.asarray(truth, dtype=np.float32).reshape(-1, 6)
        tracked = detections.track_ids >= 0
        distance = 1.0 - box_iou(truth[:, 1:5], detections.boxes[tracked]).astype(np.float64)
        distance[distance > 1.0 - self.iou] = np.nan  # motmetrics: NaN = may not be paired
        self.accumulator.update(truth[:, 5].astype(np.int64).tolist(), detections.track_ids[tracked].tolist(), distance)


def summarize(scores: Sequence[TrackingScore]) -> TrackingSummary:
    """The scores of several streams together (each stream's track ids are matched to its own objects)."""
    mm = _motmetrics()
    names = [str(i) for i in range(len(scores))]
    table = mm.metrics.create().compute_many(
        [s.accumulator for s in scores], names=names, generate_overall=True,
        metrics=["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects", "num_frames"])
    row = table.loc["OVERALL"]
    return TrackingSummary(mota=float(row["mota"]), idf1=float(row["idf1"]), switches=int(row["num_switches"]),
                           false_positives=int(row["num_false_positives"]), misses=int(row["num_misses"]),
                           objects=int(row["num_objects"]), frames=int(row["num_frames"]))
