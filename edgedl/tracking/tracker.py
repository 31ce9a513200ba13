"""The tracking engine behind ``bytetrack`` and ``sort``: Kalman-predicted boxes matched to detections by IoU.

One :class:`BoxTracker` follows the objects of one source. Each update predicts every track one
step ahead (:mod:`edgedl.tracking.kalman`), then pairs tracks with detections in up to three passes
(:mod:`edgedl.tracking.matching`), as ByteTrack does:

1. confirmed tracks with the *high* detections (score ≥ ``high``): first those seen in the previous
   frame, then those lost for a while, so that a lost track, its prediction drifting, cannot take
   the box of an object that is being followed (bytetrack on 22 demo-scene streams: 22 identity
   switches, against 29 with one joint match);
2. confirmed tracks seen in the previous frame and still unpaired, with the *low* detections
   (``low`` ≤ score < ``high``): an object the detector grows unsure of (blurred, half hidden)
   keeps its track instead of losing it and coming back under a new id. ``low=None`` skips this
   pass (SORT);
3. tentative tracks (seen, not yet confirmed) with the high detections left.

A high detection paired with nothing starts a tentative track when its score reaches ``new_track``
and it does not overlap a detection already paired this frame (IoU ≥ ``duplicate_iou``: a second
box on an object already followed, which detectors with class-aware NMS give when they waver
between two classes). A tentative track is confirmed, and given the next id, after
``confirm_hits`` frames in a row with a detection; missed once before that, it is dropped. A
confirmed track that finds no detection is lost, and forgotten ``lost_s`` seconds after it was
last seen.

The motion model advances one step per update, so it learns velocities in the rhythm of the
frames the tracker is given; timestamps only decide when a lost track is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgedl.errors import UsageError
from edgedl.evaluate import box_iou
from edgedl.tracking import kalman
from edgedl.tracking.matching import greedy_pairs


@dataclass(frozen=True)
class TrackerConfig:
    """The thresholds and lifetimes of one tracker (the module docstring says how each is used).

    Scores and IoUs are between 0 and 1; ``confirm_hits`` is at least 1 and ``lost_s`` (seconds) at
    least 0. A bad value is refused with a :class:`~edgedl.errors.UsageError`.
    """

    high: float
    low: float | None
    new_track: float
    match_iou: float
    low_iou: float
    tentative_iou: float
    confirm_hits: int
    lost_s: float
    duplicate_iou: float

    def __post_init__(self) -> None:
        def number(value: object) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        fractions = {name: getattr(self, name) for name in ("high", "low", "new_track", "match_iou", "low_iou",
                                                             "tentative_iou", "duplicate_iou")}
        bad = [f"{name}={value!r}" for name, value in fractions.items()
               if not (value is None and name == "low") and not (number(value) and 0.0 <= value <= 1.0)]
        if not (isinstance(self.confirm_hits, int) and not isinstance(self.confirm_hits, bool) and self.confirm_hits >= 1):
            bad.append(f"confirm_hits={self.confirm_hits!r}")
        if not (number(self.lost_s) and self.lost_s >= 0):
            bad.append(f"lost_s={self.lost_s!r}")
        if bad:
            raise UsageError(f"bad tracker option {', '.join(bad)}",
                             fix="scores and IoUs go from 0 to 1 (low may be None), confirm_hits from 1, lost_s (seconds) from 0")

    def floor(self, conf: float) -> float:
        """The lowest detection score this tracker uses when detections are reported from ``conf`` up."""
        return conf if self.low is None else min(conf, self.low)


class BoxTracker:
    """Tracks of one source; :meth:`update` takes one frame's detections and says which track each belongs to."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.ids = np.zeros(0, dtype=np.int64)  # -1 while tentative
        self.hits = np.zeros(0, dtype=np.int64)  # frames in a row with a detection
        self.seen = np.zeros(0)  # timestamp of the last detection
        self.next_id = 1

    def __len__(self) -> int:
        return len(self.ids)

    def update(self, boxes: np.ndarray, scores: np.ndarray, timestamp: float) -> np.ndarray:
        """Advance the tracks by one frame; the id of the confirmed track each detection belongs to, else -1.

        ``boxes`` ``[n, 4]`` (x1, y1, x2, y2), ``scores`` ``[n]``; ``timestamp`` in seconds, not
        decreasing from one call to the next. Returns int64 ``[n]``.
        """
        cfg = self.config
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(self):
            self.mean, self.cov = kalman.predict(self.mean, self.cov)
        predicted = kalman.state_to_xyxy(self.mean)
        overlap = box_iou(predicted, boxes)
        track_of = np.full(len(boxes), -1, dtype=np.int64)  # the track index each detection was paired with
        high = scores >= cfg.high
        confirmed = self.ids >= 0
        recent = confirmed & (self.hits > 0)
        self._pair(overlap, track_of, recent, high, cfg.match_iou)
        self._pair(overlap, track_of, confirmed, high, cfg.match_iou)
        if cfg.low is not None:
            self._pair(overlap, track_of, recent, ~high & (scores >= cfg.low), cfg.low_iou)
        self._pair(overlap, track_of, ~confirmed, high, cfg.tentative_iou)

        paired = track_of >= 0
        tracks = track_of[paired]
        hit = np.zeros(len(self), dtype=bool)
        hit[tracks] = True
        if len(tracks):
            self.mean[tracks], self.cov[tracks] = kalman.correct(self.mean[tracks], self.cov[tracks], boxes[paired])
        self.hits = np.where(hit, self.hits + 1, 0)
        self.seen = np.where(hit, timestamp, self.seen)
        ripe = (self.ids < 0) & (self.hits >= cfg.confirm_hits)
        self.ids[ripe] = self.next_id + np.arange(int(ripe.sum()))
        self.next_id += int(ripe.sum())
        ids = np.full(len(boxes), -1, dtype=np.int64)
        ids[paired] = self.ids[tracks]

        keep = hit | ((self.ids >= 0) & (timestamp - self.seen <= cfg.lost_s))
        self._keep(keep)
        starters = self._starters(boxes, scores, paired)
        ids[starters] = self._start(boxes[starters], timestamp)
        return ids

    def _pair(self, overlap: np.ndarray, track_of: np.ndarray, tracks: np.ndarray, detections: np.ndarray,
              threshold: float) -> None:
        """Pair the given tracks that are still free with the given detections that are still free."""
        free_tracks = np.ones(len(self), dtype=bool)
        free_tracks[track_of[track_of >= 0]] = False
        rows = np.flatnonzero(tracks & free_tracks)
        cols = np.flatnonzero(detections & (track_of < 0))
        if not (len(rows) and len(cols)):
            return
        r, c = greedy_pairs(overlap[np.ix_(rows, cols)], threshold)
        track_of[cols[c]] = rows[r]

    def _starters(self, boxes: np.ndarray, scores: np.ndarray, paired: np.ndarray) -> np.ndarray:
        """Unpaired detections confident enough for a new track and not on top of an object already followed."""
        cfg = self.config
        candidates = ~paired & (scores >= cfg.high) & (scores >= cfg.new_track)
        if candidates.any() and paired.any():
            candidates[candidates] = box_iou(boxes[candidates], boxes[paired]).max(axis=1) < cfg.duplicate_iou
        return candidates

    def _keep(self, keep: np.ndarray) -> None:
        self.mean, self.cov, self.ids = self.mean[keep], self.cov[keep], self.ids[keep]
        self.hits, self.seen = self.hits[keep], self.seen[keep]

    def _start(self, boxes: np.ndarray, timestamp: float) -> np.ndarray:
        """New tracks at ``boxes``; their ids (-1 while tentative)."""
        count = len(boxes)
        ids = np.full(count, -1, dtype=np.int64)
        if not count:
            return ids
        if self.config.confirm_hits <= 1:
            ids = self.next_id + np.arange(count, dtype=np.int64)
            self.next_id += count
        mean, cov = kalman.start(boxes)
        self.mean, self.cov = np.concatenate([self.mean, mean]), np.concatenate([self.cov, cov])
        self.ids = np.concatenate([self.ids, ids])
        self.hits = np.concatenate([self.hits, np.ones(count, dtype=np.int64)])
        self.seen = np.concatenate([self.seen, np.full(count, timestamp)])
        return ids
