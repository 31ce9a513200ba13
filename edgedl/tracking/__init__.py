"""Multi-object tracking: each detection gets a track id that stays with its object from frame to frame, per source.

    trackers = SourceTrackers("bytetrack", conf=0.25)
    prediction = trackers.update(source, prediction, timestamp)

:data:`TRACKERS` names the trackers (:mod:`edgedl.tracking.presets`); they share one engine, a
Kalman filter and IoU matching in numpy (:mod:`edgedl.tracking.tracker`), so tracking needs no
extra package. :mod:`edgedl.tracking.score` measures tracking against ground truth (MOTA, IDF1)
with the optional ``motmetrics`` package.
"""

from edgedl.tracking.per_source import SourceTrackers
from edgedl.tracking.presets import TRACKERS

__all__ = ["TRACKERS", "SourceTrackers"]
