"""Which built-in postprocessor reads a model's outputs, from its task and its output shapes.

Rules for the ``detect`` task (shapes with their batch dimension; a dynamic dimension may be a
string and is taken for the anchor count N, which follows the input size):

- two outputs ``[1, N, 4]`` and ``[1, N, C]`` → ``ssd`` (boxes x1, y1, x2, y2; pass ``ssd-tf`` for
  TensorFlow's normalised ymin, xmin, ymax, xmax);
- one output ``[1, 4+C, N]`` with ``4+C < N`` → ``yolov8``;
- one output ``[1, N, K]`` with ``K < N`` → ``yolov8`` too, read as its transposed export. YOLOv5's
  ``[1, N, 5+C]`` has the same shape and nothing in a shape tells them apart, so YOLOv5 is only ever
  chosen by name: pass ``postprocess="yolov5"``. Choosing this way logs a warning that says so;
  naming ``yolov8`` silences it.

Anything else is refused with the shapes and the fix, never decoded by a guess.
"""

from __future__ import annotations

import logging

from edgedl.errors import UsageError
from edgedl.postprocess.base import CHOOSE_FIX
from edgedl.postprocess.classification import is_score_vector
from edgedl.postprocess.detection import channels_first, ssd_pair
from edgedl.postprocess.registry import get
from edgedl.vocabulary import TASKS

log = logging.getLogger("edgedl.postprocess")


def choose(task: str, outputs: list[tuple[str, tuple]], override: str | None = None) -> str:
    """The postprocessor name for a model with ``task`` and ``outputs`` (name, shape), or ``override`` when given."""
    if override is not None:
        get(override)  # an unknown name fails here, listing the known ones
        return override
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}", fix=f"use one of {', '.join(TASKS)}, or {CHOOSE_FIX}")
    if task == "raw":
        return "raw"
    if not outputs:
        raise UsageError(f"the model has no outputs for the {task} task", fix="check the model's outputs with edgedl info")
    name = {"classify": _classify, "segment": _segment, "detect": _detect}[task](outputs)
    if name is None:
        shapes = ", ".join(f"{output} {list(shape)}" for output, shape in outputs)
        raise UsageError(f"no built-in {task} postprocessor reads outputs {shapes}", fix=CHOOSE_FIX)
    return name


def _classify(outputs: list[tuple[str, tuple]]) -> str | None:
    return "classify" if is_score_vector(outputs[0][1][1:]) else None


def _segment(outputs: list[tuple[str, tuple]]) -> str | None:
    return "segment" if len(outputs[0][1]) in (3, 4) else None


def _detect(outputs: list[tuple[str, tuple]]) -> str | None:
    if any(len(shape) != 3 for _, shape in outputs):
        return None
    if ssd_pair([(name, tuple(shape[1:])) for name, shape in outputs]) is not None:
        return "ssd"
    if len(outputs) != 1:
        return None
    name, (_, rows, cols) = outputs[0]
    layout = channels_first(rows, cols)
    if layout is None or (rows if layout else cols) < 5:  # a known layout's channel count is fixed
        return None
    if not layout:
        log.warning("output %r %s is read as a transposed YOLOv8 table [1, N, 4+C]; for YOLOv5's [1, N, 5+C] pass "
                    "postprocess=\"yolov5\" (postprocess=\"yolov8\" silences this)", name, list(outputs[0][1]))
    return "yolov8"
