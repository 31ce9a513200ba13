"""Compare a model variant against FP32 on held-out samples: agreement and latency.

The gate judges what a user sees, and refuses to judge what the held-out samples cannot show:

- a detector by its detections where FP32 finds at least :data:`MIN_JUDGED_DETECTIONS` of them; with
  fewer, a YOLO-style detector by its confident anchors (:func:`anchor_agreement`). The class score rows
  of classes FP32 never scores confidently are noise and are held only to :data:`WIPED_FLOOR`;
- a one-channel probability map (a text detector's, a binary segmenter's) where FP32 says yes
  (:func:`map_agreement`), not by a cosine over a background of near-zero noise;
- a classifier by its top-1 class and its top-k classes;
- anything else by its cosine, per output and per feature row.

When the samples hold too little of what a rule judges (confident anchors, "yes" pixels),
:func:`missing_evidence` says what is missing and :func:`require_evidence` refuses to go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgedl.errors import CalibrationError
from edgedl.loading.ort_session import SPIN_US
from edgedl.options import Gate
from edgedl.postprocess.base import PostContext
from edgedl.postprocess.detection import yolo_anchors
from edgedl.results import Detections
from edgedl.types import Sample

#: FP32 detections in the held-out samples needed before a detector is judged by its detections: with
#: fewer, one changed box moves the agreement by several percent, so its confident anchors are judged.
MIN_JUDGED_DETECTIONS = 20
#: Detections scoring within this of the runtime's confidence threshold are borderline (see detection_agreement).
BORDERLINE = 0.05
#: A detector judged by its detections or anchors must still keep every box row, and the score row of every
#: class FP32 scores confidently somewhere, above this cosine: a row below it has lost its shape.
FEATURE_FLOOR = 0.95
#: The score row of a class FP32 never scores confidently in the held-out samples is faint noise, whose cosine
#: means nothing (INT8 reads 0.6-0.9 on such rows of a trained detector); only a row below this, zeroed or
#: unrelated to FP32's, is judged lost.
WIPED_FLOOR = 0.5
#: Confident FP32 anchors needed to judge a YOLO-style detector that finds too few detections (one anchor
#: is then at most 5% of the agreement, the resolution --min-detections needs).
MIN_JUDGED_ANCHORS = 20
#: A confident anchor keeps every class score within this of FP32's (absolute, scores 0-1): a 0.3 box stays a
#: detection, a 0.9 one keeps its rank, and a class at 0.05 cannot rise past the 0.25 threshold unseen.
ANCHOR_SCORE_TOLERANCE = 0.1
#: ...and its box's IoU with FP32's box at the same anchor at least this: a 1-2 pixel shift of a 32-pixel box.
ANCHOR_MIN_IOU = 0.85
#: A probability map says "yes" above this (the binarisation threshold of DB text detectors; a 0.5 threshold
#: sees a subset of these pixels).
MAP_THRESHOLD = 0.3
#: FP32 "yes" pixels over all held-out samples needed before a probability map is judged.
MIN_MAP_PIXELS = 64
#: The band around FP32's "yes" pixels judged with them, as a share of the map's shorter side (at least a pixel):
#: the edges, where a variant's map first spreads or shrinks.
MAP_BAND = 1 / 64
#: The largest mean absolute error of a map's probabilities where FP32 says yes, and the band around it.
MAP_MAX_ERROR = 0.05
#: The smallest IoU of the variant's "yes" pixels with FP32's, per held-out sample, averaged over the samples
#: where either says yes (pooled over all pixels, pages with much text would hide a page whose text was lost).
#: At 0.9, PP-OCRv4's detector passed with a variant that on 48 unseen pages kept a mean IoU of 0.82 and lost one
#: page's text entirely; at 0.95 recovery and repair made variants that keep 0.91 (CPU) and 0.95 (TensorRT).
MAP_MIN_IOU = 0.95
#: Classifiers: the top-k classes compared, at most this many and at most half the classes.
TOP_K = 5


@dataclass(frozen=True)
class Decoder:
    """How the runtime reads a detector's outputs: its default postprocessor, by name, and the function."""

    postprocessor: str
    postprocess: Any

    def __call__(self, outputs: dict[str, np.ndarray]) -> Detections:
        """One sample's outputs (batch of one) as the detections the runtime would report, from just under its
        threshold (:data:`BORDERLINE`) up."""
        context = PostContext(conf_threshold=PostContext().conf_threshold - BORDERLINE)
        return self.postprocess(outputs, context).detections

    @property
    def reads_anchors(self) -> bool:
        """Whether boxes and class scores share one YOLO table, so every anchor's box and scores can be judged."""
        return self.postprocessor in ("yolov8", "yolov5")

    @property
    def first_class_row(self) -> int:
        """The feature row of the first class score (after the box and, for YOLOv5, objectness rows)."""
        return 5 if self.postprocessor == "yolov5" else 4

    def anchors(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Every anchor's box ``[N, 4]`` (x1, y1, x2, y2) and class scores ``[N, C]``."""
        return yolo_anchors(outputs, objectness=self.postprocessor == "yolov5")


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


def _feature_cosines(refs: list[np.ndarray], cands: list[np.ndarray], axis: int) -> np.ndarray:
    """Each feature slice's cosine (pooled over samples); NaN for slices that are ~all zero in FP32."""
    ref = np.concatenate([np.moveaxis(r, axis, 0).reshape(r.shape[axis], -1) for r in refs], axis=1)
    cand = np.concatenate([np.moveaxis(c, axis, 0).reshape(c.shape[axis], -1) for c in cands], axis=1)
    norms = np.linalg.norm(ref, axis=1)
    live = norms > 1e-6 * max(float(norms.max()), 1e-30)
    return np.array([_cosine(r, c) if ok else np.nan for r, c, ok in zip(ref, cand, live, strict=True)])


def _worst(cosines: np.ndarray, rows: np.ndarray) -> tuple[float, int]:
    """The lowest cosine among ``rows`` (a boolean mask) and its row, ignoring dead rows; (1.0, 0) when none."""
    picked = np.flatnonzero(rows & ~np.isnan(cosines))
    if not picked.size:
        return 1.0, 0
    index = int(picked[np.argmin(cosines[picked])])
    return float(cosines[index]), index


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in ``a`` with the box in the same row of ``b`` (x1, y1, x2, y2); 1.0 for two empty boxes."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - w * h
    return np.where(union > 0, w * h / np.where(union > 0, union, 1), 1.0)


def anchor_agreement(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]],
                     decode: Decoder) -> tuple[dict[str, float], np.ndarray]:
    """A YOLO-style detector's confident anchors, compared one by one, and which classes FP32 scores confidently.

    An anchor is judged where FP32's best class score reaches the runtime's threshold minus
    :data:`BORDERLINE` (so a score that sinks under the threshold is seen) or the variant's reaches the threshold
    (a detection it would report that FP32 would not). It is kept when every class score is within
    :data:`ANCHOR_SCORE_TOLERANCE` of FP32's and its box overlaps FP32's with IoU at least :data:`ANCHOR_MIN_IOU`.
    Returns ``anchors`` (FP32's confident anchors: the evidence, whatever the variant does), ``anchors_kept`` (the
    share of judged anchors kept), the worst score error and box IoU among them; and a boolean per class.
    """
    threshold = PostContext().conf_threshold
    fp32_confident = judged = kept = 0
    worst_error, worst_iou = 0.0, 1.0
    present: np.ndarray | None = None
    for ref, cand in zip(reference, candidate, strict=True):
        ref_boxes, ref_scores = decode.anchors(ref)
        cand_boxes, cand_scores = decode.anchors(cand)
        sure = ref_scores.max(axis=1) >= threshold - BORDERLINE
        classes = (ref_scores >= threshold - BORDERLINE).any(axis=0)
        present = classes if present is None else present | classes
        fp32_confident += int(sure.sum())
        sure |= cand_scores.max(axis=1) >= threshold
        if not sure.any():
            continue
        errors = np.abs(cand_scores[sure] - ref_scores[sure]).max(axis=1)
        ious = _paired_iou(ref_boxes[sure], cand_boxes[sure])
        if not (np.isfinite(errors).all() and np.isfinite(ious).all()):
            errors, ious = np.full(errors.shape, np.inf), np.zeros(ious.shape)
        judged += int(sure.sum())
        kept += int(((errors <= ANCHOR_SCORE_TOLERANCE) & (ious >= ANCHOR_MIN_IOU)).sum())
        worst_error, worst_iou = max(worst_error, float(errors.max())), min(worst_iou, float(ious.min()))
    report = {"anchors": fp32_confident, "anchors_kept": kept / judged if judged else 1.0,
              "anchor_score_error": worst_error, "anchor_box_iou": worst_iou}
    return report, present if present is not None else np.zeros(0, bool)


def _map(output: np.ndarray) -> np.ndarray | None:
    """One sample's ``[H, W]`` map from a one-channel output ``[1, 1, H, W]`` or ``[1, H, W, 1]``, else None."""
    shape = output.shape
    if len(shape) != 4 or shape[0] != 1 or 1 not in (shape[1], shape[3]):
        return None
    plane = output[0, 0] if shape[1] == 1 else output[0, :, :, 0]
    return plane if min(plane.shape) >= 8 else None


def is_probability_map(refs: list[np.ndarray]) -> bool:
    """Whether FP32's output is a one-channel map of probabilities (every value in 0-1) on every sample."""
    return all(_map(r) is not None and r.min() >= -1e-6 and r.max() <= 1 + 1e-6 for r in refs)


def map_agreement(refs: list[np.ndarray], cands: list[np.ndarray]) -> dict[str, float]:
    """A probability map judged where FP32 says yes (above :data:`MAP_THRESHOLD`): IoU per sample, error pooled.

    ``map_pixels``: FP32's "yes" pixels (the evidence); ``map_iou``: the IoU of the variant's "yes" pixels with
    FP32's (missed and invented areas both count), the mean over the samples where either says yes (1.0 when
    none does), and ``map_worst_iou`` the lowest; ``map_error``: the mean absolute error over FP32's "yes" pixels
    and a band of :data:`MAP_BAND` around them. The background far from any "yes", near zero in both, is not
    judged: its cosine is that of noise.
    """
    yes = 0
    ious: list[float] = []
    error_sum, error_count = 0.0, 0
    for r, c in zip(refs, cands, strict=True):
        ref, cand = _map(r), _map(c)
        assert ref is not None and cand is not None
        said, says = ref > MAP_THRESHOLD, cand > MAP_THRESHOLD
        yes += int(said.sum())
        either = int((said | says).sum())
        if either:
            ious.append(int((said & says).sum()) / either)
        band = max(1, round(min(ref.shape) * MAP_BAND))
        region = cv2.dilate(said.astype(np.uint8), np.ones((2 * band + 1, 2 * band + 1), np.uint8)) > 0
        error_sum += float(np.abs(cand[region] - ref[region]).sum())
        error_count += int(region.sum())
    error = error_sum / error_count if error_count else 0.0
    return {"map_pixels": yes, "map_iou": float(np.mean(ious)) if ious else 1.0,
            "map_worst_iou": min(ious, default=1.0), "map_error": error if np.isfinite(error) else float("inf")}


def _top_k(refs: list[np.ndarray], cands: list[np.ndarray]) -> dict[str, float]:
    """The share of FP32's top-k classes the variant also ranks in its top k (k: :data:`TOP_K`, at most half the
    classes); nothing when there are too few classes for more than a top-1."""
    k = min(TOP_K, refs[0].shape[-1] // 2)
    if k < 2:
        return {}
    found = [len(set(np.argsort(-r[i])[:k]) & set(np.argsort(-c[i])[:k])) / k
             for r, c in zip(refs, cands, strict=True) for i in range(r.shape[0])]
    return {"top_k": k, "topk_agreement": float(np.mean(found))}


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
    max/mean absolute error; for classifiers top-1 and top-k agreement; for one-channel probability maps the
    agreement where FP32 says yes (:func:`map_agreement`); given a ``decode``r, the detections' and, for a
    YOLO-style table, the confident anchors' agreement (recorded with the first output), where the feature
    rows of classes FP32 never scores confidently are reported apart (``absent_feature_cosine``)."""
    report: dict[str, dict[str, float]] = {}
    present: np.ndarray | None = None
    detector = decode is not None and all(np.shape(o)[0] == 1 for r in reference for o in r.values())
    extra: dict[str, float] = {}
    if detector:
        assert decode is not None
        extra = detection_agreement(reference, candidate, decode)
        if decode.reads_anchors:
            anchors, present = anchor_agreement(reference, candidate, decode)
            extra.update(anchors)
    for index, name in enumerate(reference[0]):
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
            rows = _feature_cosines(refs, cands, axis) if finite else np.zeros(refs[0].shape[axis])
            judged = np.ones(rows.shape, bool)
            if index == 0 and present is not None and decode is not None:
                judged[decode.first_class_row:][~present[:rows.size - decode.first_class_row]] = False
                if not judged.all():
                    entry["absent_feature_cosine"], entry["absent_feature_index"] = _worst(rows, ~judged)
            entry["feature_cosine"], entry["feature_index"] = _worst(rows, judged)
        if not finite:
            entry["cosine"] = entry["min_cosine"] = 0.0
        if classify and refs[0].ndim == 2:
            same = [np.array_equal(r.argmax(-1), c.argmax(-1)) for r, c in zip(refs, cands, strict=True)]
            entry["top1_agreement"] = float(np.mean(same))
            entry.update(_top_k(refs, cands))
        if not classify and not detector and is_probability_map(refs):
            entry.update(map_agreement(refs, cands))
        report[name] = entry
    if extra:
        report[next(iter(report))].update(extra)
    return report


def missing_evidence(report: dict[str, dict[str, float]]) -> str | None:
    """What the samples lack for the gate to judge by what a user sees, or None when they can be judged.

    A YOLO-style detector needs :data:`MIN_JUDGED_DETECTIONS` FP32 detections or :data:`MIN_JUDGED_ANCHORS`
    confident anchors; a probability map :data:`MIN_MAP_PIXELS` pixels where FP32 says yes. Only FP32's outputs
    decide this, so every variant compared on the same samples gets the same answer.
    """
    threshold = PostContext().conf_threshold
    for name, entry in report.items():
        if "anchors" in entry and entry["detections"] < MIN_JUDGED_DETECTIONS and entry["anchors"] < MIN_JUDGED_ANCHORS:
            return (f"output {name}: FP32 scores {entry['anchors']:.0f} anchor(s) at {threshold - BORDERLINE:.2f} "
                    f"or more, {MIN_JUDGED_ANCHORS} needed to judge a detector")
        if "map_pixels" in entry and entry["map_pixels"] < MIN_MAP_PIXELS:
            return (f"output {name}: FP32's map exceeds {MAP_THRESHOLD} at {entry['map_pixels']:.0f} pixel(s), "
                    f"{MIN_MAP_PIXELS} needed to judge where it says yes")
    return None


def require_evidence(reference: list[dict[str, np.ndarray]], classify: bool, decode: Decoder | None,
                     data_option: str) -> None:
    """Refuse to judge variants on samples that cannot show what a user sees (see :func:`missing_evidence`).

    Raises :class:`~edgedl.errors.CalibrationError` naming what is missing and asking for more,
    representative ``data_option`` data, rather than passing or repairing a variant on noise.
    """
    missing = missing_evidence(agreement(reference, reference, classify, decode))
    if missing is not None:
        raise CalibrationError(f"the {len(reference)} held-out sample(s) cannot show whether a variant keeps FP32's "
                               f"results ({missing})",
                               fix=f"pass more, representative {data_option}: frames holding what the model finds")


def passes(report: dict[str, dict[str, float]], gate: Gate) -> tuple[bool, str]:
    """Whether every output meets the gate, and a one-phrase reason when not.

    A report whose samples cannot support a judgement (:func:`missing_evidence`) does not pass.
    """
    missing = missing_evidence(report)
    if missing is not None:
        return False, f"not enough evidence: {missing}"
    judged_by_detections = any(e.get("detections", 0) >= MIN_JUDGED_DETECTIONS for e in report.values())
    judged_by_results = judged_by_detections or any("anchors" in e for e in report.values())
    feature_bound = FEATURE_FLOOR if judged_by_results else gate.min_cosine
    for name, entry in report.items():
        if "map_pixels" in entry:
            if entry["map_iou"] < MAP_MIN_IOU:
                return False, (f"output {name}: map IoU {entry['map_iou']:.3f} < {MAP_MIN_IOU} where FP32 says yes "
                               f"(> {MAP_THRESHOLD})")
            if entry["map_error"] > MAP_MAX_ERROR:
                return False, (f"output {name}: map error {entry['map_error']:.4f} > {MAP_MAX_ERROR} where FP32 "
                               f"says yes")
            continue  # the background's cosine measures noise
        if entry["cosine"] < gate.min_cosine:
            return False, f"output {name}: cosine {entry['cosine']:.4f} < {gate.min_cosine}"
        if judged_by_detections and "detections" in entry:
            worst = min(entry["detection_recall"], entry["detection_precision"])
            if worst < gate.min_detections:
                return False, (f"output {name}: detections agree {worst:.3f} < {gate.min_detections} "
                               f"(recall {entry['detection_recall']:.3f}, precision {entry['detection_precision']:.3f} "
                               f"of {entry['detections']} FP32 detections)")
        elif "anchors" in entry and entry["anchors_kept"] < gate.min_detections:
            return False, (f"output {name}: confident anchors kept {entry['anchors_kept']:.3f} < {gate.min_detections} "
                           f"(of {entry['anchors']} FP32 anchors; worst score error {entry['anchor_score_error']:.3f}, "
                           f"worst box IoU {entry['anchor_box_iou']:.3f})")
        if entry.get("feature_cosine", 1.0) < feature_bound:
            return False, (f"output {name}: feature {entry['feature_index']} cosine {entry['feature_cosine']:.4f} "
                           f"< {feature_bound}")
        if entry.get("absent_feature_cosine", 1.0) < WIPED_FLOOR:
            return False, (f"output {name}: feature {entry['absent_feature_index']} (a class FP32 never scores "
                           f"confidently) cosine {entry['absent_feature_cosine']:.4f} < {WIPED_FLOOR}: wiped")
        for key, what in (("top1_agreement", "top-1"), ("topk_agreement", f"top-{entry.get('top_k', 0):.0f}")):
            if entry.get(key, 1.0) < gate.min_top1:
                return False, f"output {name}: {what} agreement {entry[key]:.3f} < {gate.min_top1}"
    return True, "passes"


def shortfall(report: dict[str, dict[str, float]]) -> float:
    """How far a report is from full agreement with FP32: the largest of 1 - cosine, 1 - the worst judged feature
    row's cosine, 1 - top-1 or top-k agreement, 1 - detection recall or precision, 1 - the share of confident
    anchors kept, and for a probability map 1 - its IoU and its error where FP32 says yes, over every output."""
    gaps = [0.0]
    for entry in report.values():
        if "map_pixels" in entry:
            gaps += [1.0 - entry["map_iou"], entry["map_error"]]
            continue
        gaps += [1.0 - entry[key] for key in ("cosine", "feature_cosine", "top1_agreement", "topk_agreement",
                                               "detection_recall", "detection_precision", "anchors_kept")
                 if key in entry]
    return max(gaps)


def detection_decoder(task: str | None, outputs: list[tuple[str, tuple]]) -> Decoder | None:
    """How the runtime would turn a detector's outputs into detections (its default postprocessor and
    thresholds), or ``None`` when the model is no detector or no built-in postprocessor reads its outputs."""
    if task != "detect":
        return None
    from edgedl.errors import UsageError
    from edgedl.postprocess.registry import get
    from edgedl.postprocess.selection import choose

    try:
        name = choose(task, outputs)
    except UsageError:
        return None
    return Decoder(name, get(name))


#: How long a timed call waits for the previous session's idle workers to stop spinning.
SETTLE_S = 2 * SPIN_US / 1e6


def latencies_ms(sessions: dict[str, Any], feed: Sample, rounds: int = 30, warmup: int = 3) -> dict[str, float]:
    """Median latency of each session on one input, measured alternately in one run.

    Interleaving the sessions round by round means clock drift and background
    load hit every candidate alike, so their ratios are trustworthy. Each call waits out the spin of
    the session before it (:data:`~edgedl.loading.ort_session.SPIN_US`), whose idle workers would
    otherwise hold a core through the start of the next session's call.
    """
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            session.run(None, feed)
            times[key].append((time.perf_counter() - start) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}
