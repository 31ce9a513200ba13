"""Object detection: YOLOv8, YOLOv5 and SSD-style outputs → boxes in original frame pixels.

Each decoder finds the candidates above the confidence threshold, runs class-aware NMS (class-
agnostic on request) and maps the kept boxes back through the frame's letterbox/crop geometry.

- ``yolov8``: one output ``[1, 4+C, N]`` (or ``[1, N, 4+C]``): cx, cy, w, h in model-input pixels,
  then C class scores (already sigmoid). A box scores its best class.
- ``yolov5``: one output ``[1, N, 5+C]`` (or ``[1, 5+C, N]``): cx, cy, w, h, objectness, C class
  probabilities. A box scores objectness x its best class probability.
- ``ssd``: two outputs, boxes ``[1, N, 4]`` as x1, y1, x2, y2 and scores ``[1, N, C]``. Boxes are
  read as normalised to the input size when every candidate coordinate is at most 1.5, else as
  model-input pixels.
- ``ssd-tf``: the same with TensorFlow's order and scale: ymin, xmin, ymax, xmax, normalised.

SSD scores may have a background column (:attr:`PostContext.background_class`); it never becomes a
detection. Class ids are score columns, so labels are shifted by one when column 0 is a background
found automatically.
"""

from __future__ import annotations

import numpy as np

from edgedl.errors import UsageError
from edgedl.postprocess.base import CHOOSE_FIX, PostContext, first_output, one_frame, prediction
from edgedl.postprocess.nms import nms
from edgedl.postprocess.registry import register
from edgedl.results import Detections, Prediction

#: Coordinates no larger than this (for every candidate) mean "normalised to the input size".
NORMALISED_LIMIT = 1.5


def channels_first(rows: object, cols: object) -> bool | None:
    """Whether a ``[rows, cols]`` YOLO table runs channels along its rows (``[4+C, N]``) or its columns (``[N, K]``).

    Models have far more anchors than channels. A dynamic (non-integer) dimension is the anchor
    count, which follows the input size. ``None`` when both are dynamic and it cannot be told.
    """
    rows_fixed, cols_fixed = _fixed(rows), _fixed(cols)
    if rows_fixed and cols_fixed:
        return rows <= cols  # type: ignore[operator]
    if rows_fixed != cols_fixed:
        return rows_fixed
    return None


def ssd_pair(tables: list[tuple[str, tuple]]) -> tuple[str, str] | None:
    """Names of the boxes ``[N, 4]`` and scores ``[N, C]`` among one frame's output shapes, or ``None``.

    When both outputs have four columns the one named like "box" holds the boxes.
    """
    if len(tables) != 2 or any(len(shape) != 2 for _, shape in tables):
        return None
    boxes = [name for name, shape in tables if shape[1] == 4]
    if len(boxes) == 2:
        boxes = [name for name in boxes if "box" in name.lower()]
    if len(boxes) != 1:
        return None
    (box_name, box_shape), (score_name, score_shape) = sorted(tables, key=lambda t: t[0] != boxes[0])
    if _fixed(box_shape[0]) and _fixed(score_shape[0]) and box_shape[0] != score_shape[0]:
        return None
    return box_name, score_name


def _fixed(dim: object) -> bool:
    return isinstance(dim, (int, np.integer)) and dim > 0


@register("yolov8")
def yolov8(outputs: dict[str, np.ndarray], ctx: PostContext) -> Prediction:
    """YOLOv8-style ``[1, 4+C, N]`` → detections."""
    table = _yolo_table(outputs, extra=4, what="a YOLOv8 table [1, 4+C, N]")
    class_scores = table[4:]
    best = class_scores.max(axis=0)
    candidates = np.flatnonzero(best > ctx.conf_threshold)
    class_ids = class_scores[:, candidates].argmax(axis=0)
    return _detections(ctx, outputs, _xyxy(table[:4, candidates]), best[candidates], class_ids, ctx.labels)


@register("yolov5")
def yolov5(outputs: dict[str, np.ndarray], ctx: PostContext) -> Prediction:
    """YOLOv5-style ``[1, N, 5+C]`` → detections."""
    table = _yolo_table(outputs, extra=5, what="a YOLOv5 table [1, N, 5+C]")
    objectness = table[4]
    # Class probabilities are at most 1, so no box below the threshold in objectness can pass it.
    candidates = np.flatnonzero(objectness > ctx.conf_threshold)
    scores = table[5:, candidates] * objectness[candidates]
    class_ids = scores.argmax(axis=0)
    best = scores[class_ids, np.arange(candidates.size)]
    passed = best > ctx.conf_threshold
    return _detections(ctx, outputs, _xyxy(table[:4, candidates[passed]]), best[passed], class_ids[passed], ctx.labels)


@register("ssd")
def ssd(outputs: dict[str, np.ndarray], ctx: PostContext) -> Prediction:
    """SSD-style boxes ``[1, N, 4]`` (x1, y1, x2, y2; pixels or normalised) and scores ``[1, N, C]`` → detections."""
    return _ssd(outputs, ctx, tensorflow_boxes=False)


@register("ssd-tf")
def ssd_tf(outputs: dict[str, np.ndarray], ctx: PostContext) -> Prediction:
    """SSD-style boxes ``[1, N, 4]`` (ymin, xmin, ymax, xmax, normalised) and scores ``[1, N, C]`` → detections."""
    return _ssd(outputs, ctx, tensorflow_boxes=True)


def yolo_anchors(outputs: dict[str, np.ndarray], objectness: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor of one frame's YOLO table, before any threshold: boxes ``[N, 4]`` (x1, y1, x2, y2, model-input
    pixels) and class scores ``[N, C]`` as the decoder scores them (YOLOv5's ``objectness`` times each class)."""
    extra = 5 if objectness else 4
    table = _yolo_table(outputs, extra=extra, what=f"a YOLO table [1, {extra}+C, N]")
    scores = table[extra:] * table[4] if objectness else table[extra:]
    return _xyxy(table[:4]), np.asarray(scores.T)


def _yolo_table(outputs: dict[str, np.ndarray], extra: int, what: str) -> np.ndarray:
    """The first output as ``[channels, anchors]`` (transposed layouts as a view, not a copy)."""
    output = first_output(outputs)
    table = one_frame(output, 2, what)
    if not channels_first(*table.shape):
        table = table.T
    if table.shape[0] <= extra:
        raise UsageError(f"expected {what} with at least one class, got an output of shape {list(np.shape(output))}",
                         fix=CHOOSE_FIX)
    return table


def _xyxy(centre_size: np.ndarray) -> np.ndarray:
    """``[4, n]`` rows cx, cy, w, h → ``[n, 4]`` x1, y1, x2, y2 (float32)."""
    cx, cy, w, h = np.asarray(centre_size, dtype=np.float32)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _ssd(outputs: dict[str, np.ndarray], ctx: PostContext, tensorflow_boxes: bool) -> Prediction:
    what = "SSD outputs boxes [1, N, 4] and scores [1, N, C]"
    tables = {name: one_frame(array, 2, what) for name, array in outputs.items()}
    pair = ssd_pair([(name, table.shape) for name, table in tables.items()])
    if pair is None:
        shapes = ", ".join(f"{name} {list(table.shape)}" for name, table in tables.items())
        raise UsageError(f"expected {what}, got {shapes}", fix=CHOOSE_FIX)
    boxes, scores = tables[pair[0]], tables[pair[1]]
    background, labels = _background(ctx, scores.shape[1])
    class_scores = scores if background is None else np.delete(scores, background, axis=1)
    if class_scores.shape[1] == 0:
        raise UsageError(f"the SSD scores {pair[1]!r} have no class column besides the background",
                         fix="check background_class and the model's outputs")
    best = class_scores.max(axis=1)
    candidates = np.flatnonzero(best > ctx.conf_threshold)
    class_ids = class_scores[candidates].argmax(axis=1)
    if background is not None:
        class_ids += class_ids >= background  # back to score columns
    picked = np.asarray(boxes[candidates], dtype=np.float32)
    if tensorflow_boxes:
        picked = picked[:, [1, 0, 3, 2]]
    if picked.size and (tensorflow_boxes or np.abs(picked).max() <= NORMALISED_LIMIT):
        if ctx.input_size is None:
            raise UsageError("SSD boxes are normalised but the model input size is unknown",
                             fix="set PostContext.input_size to the model input's (width, height)")
        width, height = ctx.input_size
        picked *= np.array([width, height, width, height], dtype=np.float32)
    return _detections(ctx, outputs, picked, best[candidates], class_ids, labels)


def _background(ctx: PostContext, columns: int) -> tuple[int | None, list[str]]:
    """The background score column, if any, and the labels that name score columns."""
    if ctx.background_class is not None:
        if ctx.background_class >= columns:
            raise UsageError(f"background_class {ctx.background_class} is not a column of scores with {columns} columns",
                             fix=f"use a column from 0 to {columns - 1}, or None")
        return ctx.background_class, ctx.labels
    if ctx.labels and columns == len(ctx.labels) + 1:
        return 0, ["background", *ctx.labels]
    return None, ctx.labels


def _detections(ctx: PostContext, outputs: dict[str, np.ndarray], boxes: np.ndarray, scores: np.ndarray,
                class_ids: np.ndarray, labels: list[str]) -> Prediction:
    """NMS over the candidates, then boxes from model-input pixels to frame pixels."""
    keep = nms(boxes, scores, ctx.iou_threshold, None if ctx.class_agnostic else class_ids, max_output=ctx.max_detections)
    boxes = boxes[keep]
    if ctx.geometry is not None:
        boxes = ctx.geometry.to_original(boxes)
    elif ctx.input_size is not None:
        width, height = ctx.input_size
        boxes = boxes.clip(0, np.array([width, height, width, height], dtype=np.float32))
    return prediction(ctx, outputs, detections=Detections(boxes, scores[keep], class_ids[keep], labels))
