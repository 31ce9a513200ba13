"""Semantic segmentation: per-pixel class ids, mapped back onto the original frame.

The model's mask covers the model input (at the input's size or a fraction of it, as strided
networks output). Each frame pixel takes the mask value under its centre after the frame's own
resize and letterbox/crop, so letterbox padding drops out and the mask comes back at frame size:
nearest-neighbour resizing and padding removal in one gather. Frame pixels a center-crop cut off
take the value at the nearest edge of the mask.
"""

from __future__ import annotations

import numpy as np

from edgedl.errors import UsageError
from edgedl.postprocess.base import CHOOSE_FIX, PostContext, first_output, prediction
from edgedl.postprocess.registry import register
from edgedl.preprocess import Geometry
from edgedl.results import Prediction


def class_mask(output: np.ndarray, input_size: tuple[int, int] | None = None) -> np.ndarray:
    """One frame's class ids ``[h, w]`` from logits ``[1, C, h, w]`` / ``[1, h, w, C]`` or ids ``[1, h, w]`` (batch optional).

    Logits are channels-last when only their first two axes have the input's aspect ratio
    (``input_size`` is (width, height); without it, a square input is assumed); ONNX's
    channels-first otherwise.
    """
    output = np.asarray(output)
    if output.ndim == 4 and output.shape[0] == 1:
        output = output[0]
    if output.ndim == 3 and output.shape[0] == 1:
        output = output[0]
    if output.ndim == 3:
        width, height = input_size or (1, 1)
        rows, cols, last = output.shape
        channels_last = rows * width == cols * height and cols * width != last * height
        return output.argmax(axis=2 if channels_last else 0).astype(np.int32)
    if output.ndim != 2:
        raise UsageError(f"expected segmentation logits [1, C, H, W] or class ids [1, H, W], got an output of shape "
                         f"{list(output.shape)}", fix=CHOOSE_FIX)
    if output.dtype.kind == "f" and not np.array_equal(output, np.round(output)):
        raise UsageError("the segmentation output has one channel of scores, not class ids: its threshold is the "
                         "model's own", fix=CHOOSE_FIX)
    return output.astype(np.int32)


def to_frame(mask: np.ndarray, geometry: Geometry, input_size: tuple[int, int]) -> np.ndarray:
    """A mask over the model input of ``input_size`` (width, height) → the mask over the original frame."""
    height, width = mask.shape
    rows = _source_indices(geometry.original_height, geometry.scale_y, geometry.offset_y, height, height / input_size[1])
    cols = _source_indices(geometry.original_width, geometry.scale_x, geometry.offset_x, width, width / input_size[0])
    return mask[rows[:, None], cols[None, :]]


def _source_indices(length: int, scale: float, offset: float, mask_length: int, mask_per_input: float) -> np.ndarray:
    """For each frame pixel along one axis, the index of the mask cell under its centre (clamped to the mask)."""
    centres = (np.arange(length) + 0.5) * scale + offset  # in model-input pixels
    return np.floor(centres * mask_per_input).astype(np.intp).clip(0, mask_length - 1)


@register("segment")
def segment(outputs: dict[str, np.ndarray], ctx: PostContext) -> Prediction:
    """Per-pixel argmax of the first output, mapped back to frame pixels (``Prediction.mask``, int32 ``[H, W]``).

    Without a geometry (or an input size) the mask stays as the model made it.
    """
    mask = class_mask(first_output(outputs), ctx.input_size)
    if ctx.geometry is not None and ctx.input_size is not None:
        mask = to_frame(mask, ctx.geometry, ctx.input_size)
    return prediction(ctx, outputs, mask=mask)
