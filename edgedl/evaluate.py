"""Detection accuracy against known boxes: precision and recall at an IoU threshold, frame by frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgedl.results import Detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``[n, 4]`` with every box in ``b`` ``[m, 4]`` (x1, y1, x2, y2) → ``[n, m]``."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


@dataclass
class DetectionScore:
    """Running true/false positives and misses; a detection counts when its class is right and IoU ≥ ``iou``."""

    iou: float = 0.5
    true_positives: int = 0
    false_positives: int = 0
    misses: int = 0
    frames: int = 0

    def add(self, detections: Detections, truth: np.ndarray) -> None:
        """Score one frame. ``truth``: ``[k, 5]`` rows of class, x1, y1, x2, y2, or ``[k, 6]`` with an object id
        after them, as synthetic sources give (the id plays no part here)."""
        truth = np.asarray(truth, dtype=np.float32)
        truth = (truth if truth.ndim == 2 else truth.reshape(-1, 5))[:, :5]
        self.frames += 1
        matched = np.zeros(len(truth), dtype=bool)
        overlap = box_iou(detections.boxes, truth[:, 1:])
        for i in np.argsort(-detections.scores):  # best detections claim their object first
            candidates = (overlap[i] >= self.iou) & (truth[:, 0] == detections.class_ids[i]) & ~matched
            if candidates.any():
                matched[np.argmax(np.where(candidates, overlap[i], -1))] = True
                self.true_positives += 1
            else:
                self.false_positives += 1
        self.misses += int((~matched).sum())

    @property
    def precision(self) -> float:
        """Share of detections that found a real object of the right class."""
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 0.0

    @property
    def recall(self) -> float:
        """Share of real objects found."""
        total = self.true_positives + self.misses
        return self.true_positives / total if total else 0.0
