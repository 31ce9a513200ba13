"""Greedy non-maximum suppression in vectorized numpy.

The result is exactly classic greedy NMS: walk the boxes best score first, keep a box unless a box
kept before it overlaps it with IoU above the threshold. What makes it fast is the order of work,
not an approximation. Boxes go through in blocks of :data:`BLOCK` candidates still alive: one
matrix of overlaps settles the block among itself, and one more matrix lets the boxes the block
kept remove everything they suppress further down. A few thousand candidates thus cost a few
dozen numpy calls instead of one call per kept box, and the walk stops as soon as
``max_output`` boxes are kept.

Class-aware suppression compares classes inside the overlap test rather than shifting each class
to its own region of the plane (the usual coordinate-offset trick): the shifted coordinates are
large, and float32 would round the IoU of boxes far from the origin.
"""

from __future__ import annotations

import numpy as np

#: Candidates kept for NMS (best scores first) when more pass the confidence threshold.
MAX_CANDIDATES = 3000
#: Candidates settled per block: big enough that the per-call overhead of numpy vanishes, small
#: enough that a block's own overlap matrix (BLOCK x BLOCK) stays cheap.
BLOCK = 128


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, class_ids: np.ndarray | None = None, *,
        max_output: int = 300, max_candidates: int = MAX_CANDIDATES) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, best score first.

    ``boxes`` is ``[n, 4]`` (x1, y1, x2, y2, with x2 >= x1 and y2 >= y1), ``scores`` ``[n]``. A box
    is suppressed by a better-scoring kept box whose IoU with it is above ``iou_threshold``; with
    ``class_ids`` (integers) only boxes of the same class suppress each other. Equal scores keep
    input order.
    Only the best ``max_candidates`` boxes are considered, and at most ``max_output`` are kept.
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    order = _best_first(scores, max_candidates)
    if order.size == 0 or max_output <= 0:
        return order[:0]
    classes = np.zeros(order.size, np.int64) if class_ids is None else np.asarray(class_ids, np.int64).reshape(-1)[order]
    classes -= classes.min()  # non-negative, as the per-class sort keys below need
    sorted_boxes = _Boxes(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[order], classes, float(iou_threshold))

    alive = np.ones(order.size, dtype=bool)
    kept: list[np.ndarray] = []
    count, start = 0, 0
    while count < max_output:
        block = start + np.flatnonzero(alive[start:])[:BLOCK]
        if block.size == 0:
            break
        winners = block[_settle(sorted_boxes.overlaps(block, block))][: max_output - count]
        kept.append(winners)
        count += winners.size
        start = int(block[-1]) + 1
        rest = start + np.flatnonzero(alive[start:])
        alive[sorted_boxes.suppressed_by(winners, rest)] = False
    return order[np.concatenate(kept)] if kept else order[:0]


def _best_first(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` best scores, best first; ties in input order (at the cut too)."""
    candidates = np.arange(scores.size)
    if scores.size > limit:
        # A partial sort finds the cut-off score in linear time; the full sort below then orders
        # `limit` scores instead of all of them.
        cut = -np.partition(-scores, limit - 1)[limit - 1]
        above = np.flatnonzero(scores > cut)
        candidates = np.union1d(above, np.flatnonzero(scores == cut)[: limit - above.size])
    return candidates[np.argsort(-scores[candidates], kind="stable")]


def _settle(overlap: np.ndarray) -> np.ndarray:
    """Which boxes of a block greedy NMS keeps, given ``overlap[i, j]`` (box i would suppress box j).

    The block is in score order and already rid of boxes suppressed by earlier blocks, so only its
    own boxes can suppress each other, each only those after it: the walk below is plain greedy
    NMS with each row of ``overlap`` held as a Python integer bit set. Most of a block is decided
    by one bit test, and a kept box costs one bitwise or.
    """
    rows = np.packbits(np.triu(overlap, 1), axis=1, bitorder="little")
    suppressed, kept = 0, []
    for i in range(overlap.shape[0]):
        if not (suppressed >> i) & 1:
            kept.append(i)
            suppressed |= int.from_bytes(rows[i].tobytes(), "little")
    return np.array(kept, dtype=np.intp)


class _Boxes:
    """Candidates in score order, with the two overlap queries greedy NMS needs."""

    def __init__(self, boxes: np.ndarray, class_ids: np.ndarray, iou_threshold: float) -> None:
        self.coords = tuple(np.ascontiguousarray(boxes[:, k]) for k in range(4))
        self.areas = (self.coords[2] - self.coords[0]) * (self.coords[3] - self.coords[1])
        self.class_ids = class_ids
        self.threshold = np.float32(iou_threshold)
        # Positions grouped by class (score order inside a group) and their sort keys, so that the
        # later boxes of one class are a contiguous run found by binary search.
        self.by_class = np.argsort(class_ids, kind="stable")
        self.keys = class_ids[self.by_class] * class_ids.size + self.by_class

    def overlaps(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``[len(a), len(b)]`` booleans: True where position ``a[i]`` would suppress ``b[j]`` (same class, IoU above)."""
        a, b = a[:, None], b[None, :]
        return self._above_threshold(a, b) & (self.class_ids[a] == self.class_ids[b])

    def suppressed_by(self, winners: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """The positions in ``rest`` that a winner of their own class overlaps above the threshold.

        With many classes most winner-rest pairs differ in class, so the same-class pairs are listed
        and tested alone; with few classes one winners x rest matrix is cheaper than listing pairs.
        """
        if rest.size == 0:
            return rest
        n = self.class_ids.size
        base = self.class_ids[winners] * n
        first = np.searchsorted(self.keys, base + rest[0])
        counts = np.searchsorted(self.keys, base + n) - first
        if 2 * counts.sum() >= winners.size * rest.size:
            return rest[self.overlaps(winners, rest).any(axis=0)]
        owners = np.repeat(winners, counts)
        # Pair k of winner w is by_class[first[w] + (k - index of w's first pair)].
        steps = np.arange(owners.size) + np.repeat(first - (np.cumsum(counts) - counts), counts)
        others = self.by_class[steps]
        return others[self._above_threshold(owners, others)]

    def _above_threshold(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether IoU(a, b) > threshold, for broadcastable index arrays ``a`` and ``b``."""
        x1, y1, x2, y2 = self.coords
        # In-place arithmetic: these arrays reach a few hundred thousand entries, and fresh
        # temporaries of that size cost more (allocation, page faults) than the arithmetic itself.
        inter = np.minimum(x2[a], x2[b])
        inter -= np.maximum(x1[a], x1[b])
        np.maximum(inter, 0, out=inter)
        height = np.minimum(y2[a], y2[b])
        height -= np.maximum(y1[a], y1[b])
        np.maximum(height, 0, out=height)
        inter *= height
        # IoU > t  <=>  inter > t * union: no division, and a zero union never suppresses.
        union = np.add(self.areas[a], self.areas[b], out=height)
        union -= inter
        union *= self.threshold
        return inter > union
