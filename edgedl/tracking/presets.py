"""The trackers ``tracker=`` names (:data:`TRACKERS`) and the settings each one is.

- ``bytetrack``: ByteTrack (Zhang et al., ECCV 2022) with its published thresholds: detections
  from 0.5 up are matched first, those from 0.1 up keep tracks alive, a track starts from 0.6
  and is confirmed on its second frame, and is forgotten a second after it was last seen.
- ``sort``: SORT (Bewley et al., ICIP 2016): one IoU match (at least 0.3) of the reported
  detections against the Kalman predictions, confirmation after three frames in a row, a track
  forgotten after about three frames (0.1 s at 30 fps) without a detection. It never asks the
  detector for boxes below the reporting threshold.

Both refuse to start a track on a box that overlaps a detection already matched in the same frame
(IoU 0.4 or more): the demo detector, like many with class-aware NMS, sometimes puts a second box
of another class on one object, and each such box would otherwise become a short-lived false track
(tools/bench_tracking.py measures the trackers on the demo scene).
"""

from __future__ import annotations

from edgedl.tracking.tracker import TrackerConfig

PRESETS: dict[str, TrackerConfig] = {
    "bytetrack": TrackerConfig(high=0.5, low=0.1, new_track=0.6, match_iou=0.2, low_iou=0.5, tentative_iou=0.3,
                               confirm_hits=2, lost_s=1.0, duplicate_iou=0.4),
    "sort": TrackerConfig(high=0.0, low=None, new_track=0.0, match_iou=0.3, low_iou=0.3, tentative_iou=0.3,
                          confirm_hits=3, lost_s=0.1, duplicate_iou=0.4),
}
#: The trackers ``tracker=`` (and ``--tracker``) takes.
TRACKERS: tuple[str, ...] = tuple(PRESETS)
