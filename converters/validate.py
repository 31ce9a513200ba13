"""Compare a model variant against FP32 on held-out samples: agreement and latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgedl.options import Gate
from edgedl.results import Detections
from edgedl.types import Sample

#: Turns one sample's outputs (name → array, batch of one) into the detections the runtime would report.
Decoder = Callable[[dict[str, np.ndarray]], Detections]

#: FP32 detections in the held-out samples needed before a detector is judged by its detections: with
#: fewer, one changed box moves the agreement by several percent, so the per-row cosine rule applies.
MIN_JUDGED_DETECTIONS = 20
#: Detections scoring within this of the runtime's confidence threshold are borderline (see detection_agreement).
BORDERLINE = 0.05
#: A detector judged by its detections must still keep every feature row above this cosine: a row
#: below it has lost its shape (a wiped score row reads 0.0-0.9), whatever the held-out frames show.
FEATURE_FLOOR = 0.95


def run_all(session: Any, samples: list[Sample]) -> list[dict[str, np.ndarray]]:
    """Run every sample through a session; outputs by name, as float64 for fair comparison."""
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, (np.asarray(o, dtype=np.float64) for o in session.run(names, s)), strict=True)) for s in samples]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def feature_axis(shape: tuple[int, ...]) -> int | None:
    """The axis holding an output's features (YOLO's 4 box + C score rows), or None when there is none to split.

    Detector heads concatenate values of very different scales (box pixels and 0-1 scores) into one
    tensor; a whole-tensor cosine is then dominated by the big ones and hides wrecked scores. The
    feature axis is the smaller of axis 1 and the last axis, when each slice along it holds enough values
    (>= 16) for a cosine to mean something.
    """
    if len(shape) < 3:
        return None
    axis = 1 if shape[1] <= shape[-1] else len(shape) - 1
    per_slice = int(np.prod(shape)) // max(shape[axis], 1)
    return axis if per_slice >= 16 and shape[axis] > 1 else None


def _worst_feature_cosine(refs: list[np.ndarray], cands: list[np.ndarray], axis: int) -> tuple[float, int]:
    """The lowest cosine over feature slices (pooled over samples), ignoring slices that are ~all zero."""
    ref = np.concatenate([np.moveaxis(r, axis, 0).reshape(r.shape[axis], -1) for r in refs], axis=1)
    cand = np.concatenate([np.moveaxis(c, axis, 0).reshape(c.shape[axis], -1) for c in cands], axis=1)
    norms = np.linalg.norm(ref, axis=1)
    live = np.flatnonzero(norms > 1e-6 * max(float(norms.max()), 1e-30))
    cosines = [(_cosine(ref[i], cand[i]), int(i)) for i in live]
    return min(cosines) if cosines else (1.0, 0)


def detection_agreement(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]],
                        decode: Decoder) -> dict[str, float]:
    """The candidate's detections scored against FP32's as if those were the truth.

    Returns how many confident FP32 detections there were, the share of them the candidate finds
    (recall) and the share of its confident detections FP32 also finds (precision). ``decode`` gives every
    detection scoring at least the runtime's threshold minus :data:`BORDERLINE`. A detection counts as
    confident from the threshold plus that margin, and as found from the threshold minus it, so a box
    whose score merely crosses the threshold under INT8 (0.26 to 0.24) is neither lost nor new.
    """
    from edgedl.evaluate import DetectionScore
    from edgedl.postprocess.base import PostContext

    confident = PostContext().conf_threshold + BORDERLINE
    recall, precision, judged = DetectionScore(iou=0.5), DetectionScore(iou=0.5), 0
    for ref, cand in zip(reference, candidate, strict=True):
        ours, theirs = decode(ref), decode(cand)
        sure = ours.scores >= confident
        judged += int(sure.sum())
        recall.add(theirs, np.column_stack([ours.class_ids[sure], ours.boxes[sure]]))
        sure = theirs.scores >= confident
        precision.add(Detections(theirs.boxes[sure], theirs.scores[sure], theirs.class_ids[sure]),
                      np.column_stack([ours.class_ids, ours.boxes]))
    return {"detections": judged, "detection_recall": recall.recall if judged else 1.0,
            "detection_precision": precision.precision if precision.true_positives + precision.false_positives else 1.0}


def agreement(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]],
              classify: bool, decode: Decoder | None = None) -> dict[str, dict[str, float]]:
    """Per-output cosine (mean and worst sample), worst feature-slice cosine where the output has features,
    max/mean absolute error, for classifiers top-1 agreement and, given a ``decode``r, the detections'
    agreement (recorded with the first output)."""
    report: dict[str, dict[str, float]] = {}
    for name in reference[0]:
        refs = [r[name] for r in reference]
        cands = [c[name] for c in candidate]
        cosines = [_cosine(r, c) for r, c in zip(refs, cands, strict=True)]
        diffs = np.concatenate([np.abs(r - c).ravel() for r, c in zip(refs, cands, strict=True)])
        finite = bool(all(np.isfinite(c).all() for c in cands))
        entry = {
            "cosine": float(np.mean(cosines)),
            "min_cosine": float(np.min(cosines)),
            "max_abs_error": float(diffs.max()) if finite else float("inf"),
            "mean_abs_error": float(diffs.mean()) if finite else float("inf"),
        }
        axis = feature_axis(refs[0].shape)
        if axis is not None:
            worst, index = _worst_feature_cosine(refs, cands, axis) if finite else (0.0, 0)
            entry["feature_cosine"] = worst
            entry["feature_index"] = index
        if not finite:
            entry["cosine"] = entry["min_cosine"] = 0.0
        if classify and refs[0].ndim == 2:
            same = [np.array_equal(r.argmax(-1), c.argmax(-1)) for r, c in zip(refs, cands, strict=True)]
            entry["top1_agreement"] = float(np.mean(same))
        report[name] = entry
    if decode is not None and all(np.shape(o)[0] == 1 for r in reference for o in r.values()):
        report[next(iter(report))].update(detection_agreement(reference, candidate, decode))
    return report


def passes(report: dict[str, dict[str, float]], gate: Gate) -> tuple[bool, str]:
    """Whether every output meets the gate, and a one-phrase reason when not."""
    judged_by_detections = any(e.get("detections", 0) >= MIN_JUDGED_DETECTIONS for e in report.values())
    feature_bound = FEATURE_FLOOR if judged_by_detections else gate.min_cosine
    for name, entry in report.items():
        if entry["cosine"] < gate.min_cosine:
            return False, f"output {name}: cosine {entry['cosine']:.4f} < {gate.min_cosine}"
        if judged_by_detections and "detections" in entry:
            worst = min(entry["detection_recall"], entry["detection_precision"])
            if worst < gate.min_detections:
                return False, (f"output {name}: detections agree {worst:.3f} < {gate.min_detections} "
                               f"(recall {entry['detection_recall']:.3f}, precision {entry['detection_precision']:.3f} "
                               f"of {entry['detections']} FP32 detections)")
        if entry.get("feature_cosine", 1.0) < feature_bound:
            return False, (f"output {name}: feature {entry['feature_index']} cosine {entry['feature_cosine']:.4f} "
                           f"< {feature_bound}")
        if entry.get("top1_agreement", 1.0) < gate.min_top1:
            return False, f"output {name}: top-1 agreement {entry['top1_agreement']:.3f} < {gate.min_top1}"
    return True, "passes"


def shortfall(report: dict[str, dict[str, float]]) -> float:
    """How far a report is from full agreement with FP32: the largest of 1 - cosine, 1 - the worst feature
    row's cosine, 1 - top-1 agreement and 1 - detection recall or precision, over every output."""
    gaps = [0.0]
    for entry in report.values():
        gaps += [1.0 - entry[key] for key in ("cosine", "feature_cosine", "top1_agreement", "detection_recall",
                                               "detection_precision") if key in entry]
    return max(gaps)


def detection_decoder(task: str | None, outputs: list[tuple[str, tuple]]) -> Decoder | None:
    """How the runtime would turn a detector's outputs into detections (its default postprocessor and
    thresholds), or ``None`` when the model is no detector or no built-in postprocessor reads its outputs."""
    if task != "detect":
        return None
    from edgedl.errors import UsageError
    from edgedl.postprocess.base import PostContext
    from edgedl.postprocess.registry import get
    from edgedl.postprocess.selection import choose

    try:
        postprocess = get(choose(task, outputs))
    except UsageError:
        return None
    context = PostContext(conf_threshold=PostContext().conf_threshold - BORDERLINE)
    return lambda outputs: postprocess(outputs, context).detections


def latencies_ms(sessions: dict[str, Any], feed: Sample, rounds: int = 30, warmup: int = 3) -> dict[str, float]:
    """Median latency of each session on one input, measured alternately in one run.

    Interleaving the sessions round by round means clock drift and background
    load hit every candidate alike, so their ratios are trustworthy.
    """
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            times[key].append((time.perf_counter() - start) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}
