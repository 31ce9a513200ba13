"""What flows through a stream: captured frames, source events, predictions and per-frame results.

These types are the seams between the streaming stages (sources, preprocessing, the model,
postprocessors, sinks and the user's code); each stage only needs this module to talk to
the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgedl.preprocess import Geometry


@dataclass
class Frame:
    """One captured image: BGR ``uint8`` ``H x W x 3``, as OpenCV decodes it.

    ``index`` counts frames read from the source (0, 1, 2… with gaps where frames were dropped);
    ``timestamp`` is ``time.monotonic()`` when the frame was captured. ``truth`` carries
    ground truth where the source knows it (``synthetic://`` sources): a float32 ``[k, 6]``
    array of class, x1, y1, x2, y2 (frame pixels) and object id (the same object keeps its id
    from frame to frame). Readers that need no ids use the first five columns.
    """

    image: np.ndarray
    index: int
    timestamp: float
    source: str = ""
    truth: Any = None

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.image.shape[0])


#: Kinds of :class:`SourceEvent`.
EVENT_KINDS: tuple[str, ...] = (
    "opened",        # the source delivered its first frame
    "stalled",       # no frame within the read deadline
    "stale",         # the same frame repeated past the stale limit (a frozen camera or decoder)
    "disconnected",  # read failed or the device went away
    "reconnecting",  # a reconnection attempt is about to start (message says which and the delay)
    "reconnected",   # frames flow again after a disconnect
    "resized",       # the frame size changed mid-stream
    "gave-up",       # reconnection attempts are exhausted; the stream ends
    "skipped",       # an item the source could not read was passed over (an unreadable image in a folder)
    "ended",         # end of a file, folder or finite synthetic stream
    "unavailable",   # one of a pipeline's several sources could not be opened at its start (the others run)
)


@dataclass(frozen=True)
class SourceEvent:
    """Something that happened to a source that an app may want to know about (see :data:`EVENT_KINDS`)."""

    kind: str
    message: str
    timestamp: float
    source: str = ""

    def __str__(self) -> str:
        return f"{self.source}: {self.kind}: {self.message}" if self.source else f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class Detection:
    """One detected object; ``box`` is ``(x1, y1, x2, y2)`` in original frame pixels.

    ``track_id`` is the id of the track the object belongs to when a tracker runs (it stays with
    the object from frame to frame, per source), else None.
    """

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    label: str
    track_id: int | None = None


class Detections:
    """Detections of one frame, kept as arrays (vectorized use) and iterable as :class:`Detection`.

    ``boxes`` float32 ``[n, 4]`` (x1, y1, x2, y2, frame pixels), ``scores`` float32 ``[n]``,
    ``class_ids`` int64 ``[n]``; ``labels`` names class ids (``str(id)`` when it has no name).
    ``track_ids`` int64 ``[n]`` holds each detection's track id when a tracker runs, -1 for an
    untracked one (all -1 without a tracker).
    """

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, labels: list[str] | None = None,
                 track_ids: np.ndarray | None = None) -> None:
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        self.track_ids = (np.full(len(self.scores), -1, dtype=np.int64) if track_ids is None
                          else np.asarray(track_ids, dtype=np.int64).reshape(-1))
        if not len(self.boxes) == len(self.scores) == len(self.class_ids) == len(self.track_ids):
            raise ValueError("boxes, scores, class_ids and track_ids must have the same length")
        self.labels = list(labels or [])

    @classmethod
    def empty(cls, labels: list[str] | None = None) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), labels)

    def label(self, class_id: int) -> str:
        """The name of ``class_id``."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, i: int) -> Detection:
        box = self.boxes[i]
        cid = int(self.class_ids[i])
        track = int(self.track_ids[i])
        return Detection((float(box[0]), float(box[1]), float(box[2]), float(box[3])), float(self.scores[i]), cid,
                         self.label(cid), track if track >= 0 else None)

    def __iter__(self) -> Iterator[Detection]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Detections({len(self)})"


@dataclass(frozen=True)
class ClassScore:
    """One class of a classification result."""

    class_id: int
    label: str
    score: float


@dataclass
class Prediction:
    """What a postprocessor makes of one frame's model outputs. Fields it does not fill stay empty."""

    detections: Detections = field(default_factory=Detections.empty)
    classes: list[ClassScore] = field(default_factory=list)
    mask: np.ndarray | None = None  # segmentation: class id per original-frame pixel, int32 [H, W]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # the raw outputs (``raw`` task, or kept on request)


@dataclass
class Result:
    """One frame's trip through the pipeline.

    ``timings`` holds milliseconds per stage (``preprocess``, ``infer``, ``postprocess``, …);
    ``latency_ms`` runs from capture to the moment the result was ready; ``dropped`` is the
    number of frames the source has dropped so far (live sources drop the oldest frame when
    the pipeline falls behind). ``source`` names the pipeline source the frame came from (its
    URI, or the name it was given; ``frame.source`` when the result was made outside a pipeline);
    ``frame.source`` is the frame's own origin, such as a file in a folder source.
    """

    frame: Frame
    prediction: Prediction
    geometry: Geometry | None
    timings: dict[str, float]
    latency_ms: float
    dropped: int
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source:  # made outside a pipeline: the frame's own origin is the only name there is
            self.source = self.frame.source

    @property
    def frame_id(self) -> int:
        """The frame's index in its source."""
        return self.frame.index

    @property
    def timestamp(self) -> float:
        """Capture time (``time.monotonic()``)."""
        return self.frame.timestamp

    @property
    def image(self) -> np.ndarray:
        """The original frame (BGR uint8)."""
        return self.frame.image

    @property
    def detections(self) -> Detections:
        """Detected objects, boxes in frame pixels (empty unless the task is ``detect``)."""
        return self.prediction.detections

    @property
    def classes(self) -> list[ClassScore]:
        """Top-k classes, best first (empty unless the task is ``classify``)."""
        return self.prediction.classes

    @property
    def mask(self) -> np.ndarray | None:
        """Per-pixel class ids at frame size (``segment`` task)."""
        return self.prediction.mask

    @property
    def outputs(self) -> dict[str, np.ndarray]:
        """Raw model outputs when kept (``raw`` task, or ``keep_outputs=True``)."""
        return self.prediction.outputs
