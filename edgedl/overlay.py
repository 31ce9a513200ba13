"""Draw what a model found onto a frame: boxes with labels, track ids and trails, top-k classes, a segmentation mask, speed.

    annotated = edgedl.overlay.draw(result.image, result, fps=30.0)   # a copy; result.image is untouched
    trails = edgedl.overlay.Trails()                                   # one per source, kept across frames
    annotated = edgedl.overlay.draw(result.image, result, trails=trails)

Colours are a fixed function of the class id, so a class keeps its colour across frames, runs and
between its boxes and its mask pixels. Mask class 0 is taken as background and left untinted. A
trail takes its colour from its track id, so two objects of one class still have trails apart.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import cv2
import numpy as np

from edgedl.errors import UsageError
from edgedl.results import Detections, Prediction, Result

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PALETTE_SIZE = 256  # colours repeat after this many class ids
_MASK_ALPHA = 0.45
TRAIL_LENGTH = 30  # box centres a trail keeps: a second of motion at 30 fps
_PANEL = (32, 32, 32)  # background of the class list and the speed text


def class_colours(class_ids: np.ndarray) -> np.ndarray:
    """BGR ``uint8`` ``[n, 3]`` colours for class ids; deterministic, and neighbouring ids look different."""
    ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    # Golden-ratio steps around the hue circle keep any run of consecutive ids far apart in colour.
    hue = (ids * 0.6180339887498949) % 1.0 * 180.0
    hsv = np.stack([hue, np.full_like(hue, 210.0), np.full_like(hue, 255.0)], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv.reshape(-1, 1, 3), cv2.COLOR_HSV2BGR).reshape(-1, 3)


@lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    return class_colours(np.arange(_PALETTE_SIZE))


class Trails:
    """The last ``length`` box centres of each track of one source, for :func:`draw` to draw behind its objects.

    Track ids are per source, so a sink that shows several sources keeps one ``Trails`` per source.
    A track absent for ``length`` frames is forgotten.
    """

    def __init__(self, length: int = TRAIL_LENGTH) -> None:
        if length < 2:
            raise UsageError(f"a trail needs at least 2 points, got length={length}", fix=f"use the default, {TRAIL_LENGTH}")
        self.length = length
        self._points: dict[int, deque[tuple[int, int]]] = {}
        self._last_seen: dict[int, int] = {}
        self._frames = 0

    def add(self, detections: Detections) -> None:
        """Extend the trails with one frame's tracked detections (untracked ones have no trail)."""
        self._frames += 1
        tracked = detections.track_ids >= 0
        centres = np.rint((detections.boxes[tracked, :2] + detections.boxes[tracked, 2:]) / 2).astype(np.int64)
        for track, (x, y) in zip(detections.track_ids[tracked].tolist(), centres.tolist(), strict=True):
            self._points.setdefault(track, deque(maxlen=self.length)).append((x, y))
            self._last_seen[track] = self._frames
        for track in [t for t, seen in self._last_seen.items() if self._frames - seen >= self.length]:
            del self._points[track], self._last_seen[track]

    def points(self, track_id: int) -> np.ndarray:
        """The trail of ``track_id``: int64 ``[k, 2]`` x, y centres, oldest first (empty when unknown)."""
        return np.array(self._points.get(track_id, ()), dtype=np.int64).reshape(-1, 2)


def draw(image: np.ndarray, result_or_prediction: Result | Prediction | Detections, *, fps: float | None = None,
         copy: bool = True, trails: Trails | None = None) -> np.ndarray:
    """Draw a :class:`Result`, :class:`Prediction` or :class:`Detections` onto a BGR ``uint8`` image.

    Draws, in this order: the segmentation mask blended in per-class colours, with ``trails`` the
    recent path of each tracked object in this frame (``trails`` is first extended with this
    frame's detections), each box with ``#track label score`` (``label score`` when untracked) on
    a filled tag (kept inside the image), the top-k classes at the top left, and ``fps`` (when
    given) and the result's latency at the top right. Returns the drawn image: a copy unless
    ``copy=False``, which draws into ``image`` itself.
    """
    prediction, latency_ms = _unpack(result_or_prediction)
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        shape = getattr(image, "shape", None)
        raise UsageError(f"overlay.draw needs a BGR uint8 H x W x 3 image, got {type(image).__name__} {shape}",
                         fix="pass the frame as OpenCV decodes it (result.image)")
    if copy:
        out = image.copy()
    elif not (image.flags.c_contiguous and image.flags.writeable):
        raise UsageError("overlay.draw(copy=False) needs a writable, contiguous image", fix="pass copy=True")
    else:
        out = image
    style = _Style.for_image(out)
    if prediction.mask is not None:
        _blend_mask(out, prediction.mask)
    if trails is not None:
        trails.add(prediction.detections)
        _draw_trails(out, prediction.detections, trails, style)
    _draw_boxes(out, prediction.detections, style)
    _draw_classes(out, prediction, style)
    speed = [f"{fps:.1f} fps"] if fps is not None else []
    speed += [f"{latency_ms:.1f} ms"] if latency_ms is not None else []
    if speed:
        _tag(out, "  ".join(speed), out.shape[1], 0, _PANEL, style, align_right=True)
    return out


def _unpack(item: Result | Prediction | Detections) -> tuple[Prediction, float | None]:
    if isinstance(item, Result):
        return item.prediction, item.latency_ms
    if isinstance(item, Prediction):
        return item, None
    if isinstance(item, Detections):
        return Prediction(detections=item), None
    raise UsageError(f"overlay.draw takes a Result, Prediction or Detections, got {type(item).__name__}",
                     fix="pass the result the stream yielded")


class _Style:
    """Line and text sizes that stay readable from a 320-pixel thumbnail to a 4K frame."""

    def __init__(self, scale: float) -> None:
        self.font_scale = scale
        self.text_thickness = max(1, round(scale * 1.6))
        self.box_thickness = max(1, round(scale * 2.5))
        self.pad = max(2, round(scale * 4))

    @classmethod
    def for_image(cls, image: np.ndarray) -> _Style:
        return cls(max(0.4, min(image.shape[:2]) / 900.0))


def _blend_mask(out: np.ndarray, mask: np.ndarray) -> None:
    mask = np.asarray(mask)
    if mask.shape != out.shape[:2]:
        # Nearest keeps ids whole (no blended ids at class borders).
        mask = cv2.resize(mask.astype(np.int32), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST)
    tinted = mask > 0
    if not tinted.any():
        return
    # uint8 ids wrap modulo the palette size, as box colours do; a per-channel LUT then colours every pixel at once.
    ids = mask.astype(np.uint8)
    colours = cv2.LUT(cv2.merge([ids, ids, ids]), _palette().reshape(_PALETTE_SIZE, 1, 3))
    blended = cv2.addWeighted(out, 1.0 - _MASK_ALPHA, colours, _MASK_ALPHA, 0.0)
    cv2.copyTo(blended, tinted.view(np.uint8), out)


def _draw_boxes(out: np.ndarray, detections: Detections, style: _Style) -> None:
    if not len(detections):
        return
    height, width = out.shape[:2]
    boxes = np.rint(detections.boxes).astype(np.int64)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
    colours = np.take(_palette(), detections.class_ids, axis=0, mode="wrap")
    for (x1, y1, x2, y2), colour, det in zip(boxes.tolist(), colours.tolist(), detections, strict=True):
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, style.box_thickness)  # axis-aligned: no anti-aliasing needed
        track = "" if det.track_id is None else f"#{det.track_id} "
        _tag(out, f"{track}{det.label} {det.score:.2f}", x1, y1, colour, style, above=True)


def _draw_trails(out: np.ndarray, detections: Detections, trails: Trails, style: _Style) -> None:
    tracks = detections.track_ids[detections.track_ids >= 0]
    colours = np.take(_palette(), tracks, axis=0, mode="wrap")
    for track, colour in zip(tracks.tolist(), colours.tolist(), strict=True):
        points = trails.points(track)
        if len(points) > 1:
            cv2.polylines(out, [points.astype(np.int32).reshape(-1, 1, 2)], False, colour, style.box_thickness, cv2.LINE_AA)


def _draw_classes(out: np.ndarray, prediction: Prediction, style: _Style) -> None:
    y = 0
    ids = np.asarray([c.class_id for c in prediction.classes], dtype=np.int64)
    colours = np.take(_palette(), ids, axis=0, mode="wrap")
    for cls, colour in zip(prediction.classes, colours.tolist(), strict=True):
        y = _tag(out, f"{cls.label} {cls.score:.2f}", 0, y, colour, style)


def _tag(out: np.ndarray, text: str, x: int, y: int, colour: tuple[int, ...] | list[int], style: _Style, *,
         above: bool = False, align_right: bool = False) -> int:
    """Text on a filled tag, moved as little as needed to stay inside the image; returns the tag's bottom."""
    height, width = out.shape[:2]
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.text_thickness)
    tag_w, tag_h = text_w + 2 * style.pad, text_h + baseline + 2 * style.pad
    left = x - tag_w if align_right else x
    # Above a box's top edge when it fits there, else just inside the box.
    top = y - tag_h if above and y - tag_h >= 0 else y
    left = int(min(max(left, 0), max(width - tag_w, 0)))
    top = int(min(max(top, 0), max(height - tag_h, 0)))
    cv2.rectangle(out, (left, top), (left + tag_w - 1, top + tag_h - 1), tuple(int(c) for c in colour), cv2.FILLED)
    cv2.putText(out, text, (left + style.pad, top + style.pad + text_h), _FONT, style.font_scale,
                _text_colour(colour), style.text_thickness, cv2.LINE_AA)
    return top + tag_h


def _text_colour(background: tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """Black on light tags, white on dark ones (luma of the BGR background)."""
    blue, green, red = (int(c) for c in background)
    return (0, 0, 0) if 0.114 * blue + 0.587 * green + 0.299 * red > 150 else (255, 255, 255)
