"""Raw outputs: no decoding, the arrays go to the app as the model returned them."""

from __future__ import annotations

import numpy as np

from edgedl.postprocess.base import PostContext
from edgedl.postprocess.registry import register
from edgedl.results import Prediction


@register("raw")
def raw(outputs: dict[str, np.ndarray], ctx: PostContext) -> Prediction:
    """``Prediction.outputs`` holds the model's outputs; nothing else is filled."""
    return Prediction(outputs=outputs)
