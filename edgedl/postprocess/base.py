"""What every postprocessor is given besides the outputs, and the small helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgedl.errors import UsageError
from edgedl.preprocess import Geometry
from edgedl.results import Prediction

#: The fix every "these outputs do not fit this postprocessor" error suggests.
CHOOSE_FIX = ('pass postprocess="NAME" with a built-in that fits (edgedl.postprocess.names()), '
              'or add your own with @edgedl.postprocess.register("NAME")')


@dataclass(frozen=True)
class PostContext:
    """Everything about a frame and the user's options that a postprocessor needs besides the outputs.

    ``geometry`` maps model-input pixels back to frame pixels (``None``: results stay in model-input
    pixels); ``input_size`` is the model input's ``(width, height)``. ``background_class`` is the
    score column of SSD-style outputs that means "no object" (``None``: column 0 when the scores have
    exactly one column more than ``labels``, else no such column).
    """

    geometry: Geometry | None = None
    input_size: tuple[int, int] | None = None
    labels: list[str] = field(default_factory=list)
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    top_k: int = 5
    max_detections: int = 300
    class_agnostic: bool = False
    keep_outputs: bool = False
    background_class: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (0.0 <= self.conf_threshold <= 1.0, f"conf_threshold must be between 0 and 1, got {self.conf_threshold}"),
            (0.0 <= self.iou_threshold <= 1.0, f"iou_threshold must be between 0 and 1, got {self.iou_threshold}"),
            (self.top_k >= 1, f"top_k must be at least 1, got {self.top_k}"),
            (self.max_detections >= 1, f"max_detections must be at least 1, got {self.max_detections}"),
            (self.input_size is None or (len(self.input_size) == 2 and min(self.input_size) > 0),
             f"input_size must be a positive (width, height), got {self.input_size}"),
            (self.background_class is None or self.background_class >= 0,
             f"background_class must be a score column (0 or more), got {self.background_class}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"bad postprocessing option: {message}",
                                 fix="correct that value (see edgedl.postprocess.PostContext)")


def one_frame(array: np.ndarray, ndim: int, what: str) -> np.ndarray:
    """``array`` without its batch dimension of one (batch-less arrays pass as they are).

    ``ndim`` is the rank of one frame's output and ``what`` describes the expected shape for the
    error raised when the array does not fit it.
    """
    array = np.asarray(array)
    if array.ndim == ndim + 1 and array.shape[0] == 1:
        return array[0]
    if array.ndim == ndim:
        return array
    raise UsageError(f"expected {what} for one frame, got an output of shape {list(array.shape)}", fix=CHOOSE_FIX)


def first_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The model's first output (models with one meaningful output put it first)."""
    if not outputs:
        raise UsageError("the model returned no outputs to postprocess", fix="check the model's outputs with edgedl info")
    return next(iter(outputs.values()))


def label_of(labels: list[str], class_id: int) -> str:
    """The name of ``class_id`` (its number when ``labels`` has no name for it)."""
    return labels[class_id] if 0 <= class_id < len(labels) else str(class_id)


def prediction(ctx: PostContext, outputs: dict[str, np.ndarray], **fields: Any) -> Prediction:
    """A :class:`Prediction` with ``fields``, carrying the raw outputs too when ``ctx.keep_outputs``."""
    if ctx.keep_outputs:
        fields["outputs"] = outputs
    return Prediction(**fields)
