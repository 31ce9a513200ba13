"""Classification: class scores → the top-k classes with their probabilities."""

from __future__ import annotations

import numpy as np

from edgedl.errors import UsageError
from edgedl.postprocess.base import CHOOSE_FIX, PostContext, first_output, label_of, prediction
from edgedl.postprocess.registry import register
from edgedl.results import ClassScore, Prediction

#: How far from 1 the scores may sum and still be read as probabilities already.
PROBABILITY_TOLERANCE = 1e-3


def is_score_vector(shape: tuple) -> bool:
    """Whether an output of ``shape`` holds one score per class: at most one dimension other than 1."""
    return sum(1 for d in shape if d != 1) <= 1


def probabilities(scores: np.ndarray) -> np.ndarray:
    """``scores`` as probabilities: unchanged when they already are (non-negative, summing to 1), else softmax."""
    scores = scores.astype(np.float64)
    if scores.min() >= 0 and abs(scores.sum() - 1.0) <= PROBABILITY_TOLERANCE:
        return scores
    exp = np.exp(scores - scores.max())  # shifted so that large logits cannot overflow
    return exp / exp.sum()


@register("classify")
def classify(outputs: dict[str, np.ndarray], ctx: PostContext) -> Prediction:
    """The first output's ``[1, C]`` scores (logits or probabilities; unit dims are ignored) → top-k, best first."""
    output = np.asarray(first_output(outputs))
    if not is_score_vector(output.shape):
        raise UsageError(f"expected class scores [1, C] for one frame, got an output of shape {list(output.shape)}",
                         fix=CHOOSE_FIX)
    scores = output.reshape(-1)
    if scores.size == 0:
        return prediction(ctx, outputs)
    probs = probabilities(scores)
    k = min(ctx.top_k, probs.size)
    top = np.argpartition(-probs, k - 1)[:k]
    top = top[np.argsort(-probs[top], kind="stable")]
    return prediction(ctx, outputs, classes=[ClassScore(int(i), label_of(ctx.labels, int(i)), float(probs[i])) for i in top])
