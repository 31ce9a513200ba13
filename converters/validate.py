"""Compare a model variant against FP32 on held-out samples: agreement and latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedl.types import Sample


@dataclass(frozen=True)
class Gate:
    """The accuracy a variant must keep against FP32 to be accepted."""

    min_cosine: float = 0.99
    min_top1: float = 0.9


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


def agreement(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]],
              classify: bool) -> dict[str, dict[str, float]]:
    """Per-output cosine (mean and worst sample), worst feature-slice cosine where the output has features,
    max/mean absolute error and, for classifiers, top-1 agreement."""
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
    return report


def passes(report: dict[str, dict[str, float]], gate: Gate) -> tuple[bool, str]:
    """Whether every output meets the gate, and a one-phrase reason when not."""
    for name, entry in report.items():
        if entry["cosine"] < gate.min_cosine:
            return False, f"output {name}: cosine {entry['cosine']:.4f} < {gate.min_cosine}"
        if entry.get("feature_cosine", 1.0) < gate.min_cosine:
            return False, (f"output {name}: feature {entry['feature_index']} cosine {entry['feature_cosine']:.4f} "
                           f"< {gate.min_cosine}")
        if entry.get("top1_agreement", 1.0) < gate.min_top1:
            return False, f"output {name}: top-1 agreement {entry['top1_agreement']:.3f} < {gate.min_top1}"
    return True, "passes"


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
