"""One tracker per source: what a stream with ``tracker=`` runs after postprocessing each frame.

    trackers = SourceTrackers("bytetrack", conf=0.25)
    # postprocess at trackers.detector_conf (0.1: ByteTrack also uses the boxes the detector is unsure of)
    prediction = trackers.update(source, prediction, frame.timestamp)
    [d.track_id for d in prediction.detections]       # 1, 2, 3… per source; None: not (yet) tracked

``conf`` is the user's confidence threshold, the one detections are reported from. A tracker that
associates unsure boxes too (ByteTrack) needs the postprocessor to keep boxes down to
:attr:`SourceTrackers.detector_conf`, which is at most ``conf``; :meth:`SourceTrackers.update` then
reports

- every detection that belongs to a confirmed track, with its ``track_id``, whatever its score:
  ByteTrack's point is that an object the detector grows unsure of (blurred, half hidden) stays
  reported under its id;
- every other detection scoring ``conf`` or more, with ``track_id`` -1 (``Detection.track_id``
  None): an object seen for the first time, before its track is confirmed, or a box no track
  took. A stream thus reports, with a tracker on, every detection it reports without one, plus
  the unsure ones that continue a track;

and drops the unsure detections that continue no track.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from edgedl.errors import UsageError
from edgedl.results import Detections, Prediction
from edgedl.tracking.presets import PRESETS, TRACKERS
from edgedl.tracking.tracker import BoxTracker, TrackerConfig
from edgedl.vocabulary import check_choice


class SourceTrackers:
    """Trackers of the kind ``name`` names (one of :data:`~edgedl.tracking.TRACKERS`), one per source, made on first use.

    ``options`` override the named tracker's settings (the fields of
    :class:`~edgedl.tracking.tracker.TrackerConfig`, such as ``lost_s=2.0``). An unknown name or
    option, or a bad value, is refused with a :class:`~edgedl.errors.UsageError`. Calls for one
    source must come in frame order; the object is not meant to be shared between threads.
    """

    def __init__(self, name: str = "bytetrack", *, conf: float = 0.25, **options: float | int | None) -> None:
        check_choice(name, TRACKERS, "tracker")
        if not 0.0 <= conf <= 1.0:
            raise UsageError(f"conf must be between 0 and 1, got {conf}", fix="for example --conf 0.25")
        known = [f.name for f in fields(TrackerConfig)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise UsageError(f"unknown option {', '.join(unknown)} for tracker {name!r}", fix=f"use {', '.join(known)}")
        self.name = name
        self.conf = conf
        self.config = replace(PRESETS[name], **options)
        self._trackers: dict[str, BoxTracker] = {}

    @property
    def detector_conf(self) -> float:
        """The confidence threshold to postprocess at while tracking: ``conf``, or lower where the tracker uses unsure boxes."""
        return self.config.floor(self.conf)

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources tracked so far, in the order they first appeared."""
        return tuple(self._trackers)

    def update(self, source: str, prediction: Prediction, timestamp: float) -> Prediction:
        """``prediction`` with track ids on its detections, as reported (see the module docstring), after one frame of ``source``.

        ``timestamp`` is the frame's capture time in seconds (``Frame.timestamp``); it decides
        when a track unseen for a while is forgotten. Detections below :attr:`detector_conf` are
        left out of tracking and of the result.
        """
        tracker = self._trackers.get(source)
        if tracker is None:
            tracker = self._trackers[source] = BoxTracker(self.config)
        dets = prediction.detections
        usable = dets.scores >= self.detector_conf
        ids = np.full(len(dets), -1, dtype=np.int64)
        ids[usable] = tracker.update(dets.boxes[usable], dets.scores[usable], timestamp)
        keep = (ids >= 0) | (dets.scores >= self.conf)
        tracked = Detections(dets.boxes[keep], dets.scores[keep], dets.class_ids[keep], dets.labels, track_ids=ids[keep])
        return replace(prediction, detections=tracked)

    def remove(self, source: str) -> None:
        """Forget ``source``'s tracks (a source that ended or was closed); a later frame from it starts afresh, ids from 1."""
        self._trackers.pop(source, None)
