"""Choose each activation tensor's INT8 range by the error it causes, rather than one method for the whole model.

Min-max keeps every value but spends the integer steps on rare extremes; percentiles and entropy clip
the tail to give the bulk finer steps. Which is right differs from tensor to tensor (a bounded
sigmoid output wants min-max, a heavy-tailed pre-activation wants clipping), so every tensor gets
every candidate and keeps the one with the least quantization error on its own calibration values:

- ``minmax``: ONNX Runtime's calibrated range, as the plain quantizer uses it;
- ``p99.9``, ``p99.99``, ``p99.999``: percentiles of the values (both tails, or of ``|x|`` when symmetric);
- ``entropy``: TensorRT's KL-divergence threshold on the histogram of ``|x|``;
- ``mse``: a search over clipped ranges for the least mean squared error.

The error of a range is estimated in closed form from a sorted sample of the tensor's values: clipped
values cost their distance to the bound squared, values inside cost a rounding step squared over 12,
exact zeros nothing (INT8 represents zero exactly). ONNX Runtime's quantizer then takes the chosen
ranges as a precomputed calibration (``TensorsData``), so nothing of its quantization changes but
the ranges.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from edgedl.converters.activations import stream
from edgedl.types import Sample

#: Values kept per tensor to measure errors on (spread evenly over the calibration samples).
SAMPLED_VALUES = 1 << 16
PERCENTILES = (99.9, 99.99, 99.999)
#: Min-max is kept unless another range cuts the error by at least this share (clipping for less is noise).
MIN_GAIN = 0.02
#: Clipping factors the MSE search tries on each side of the min-max range.
_CLIPS = np.concatenate([[1.0], np.geomspace(0.95, 0.02, 48)])


@dataclass(frozen=True)
class Choice:
    """The range kept for one tensor, which candidate it came from, and its error relative to min-max's."""

    low: float
    high: float
    method: str
    relative_error: float


class _Values:
    """A sorted sample of one tensor's values with prefix sums, for closed-form clipping and rounding error."""

    def __init__(self, values: np.ndarray) -> None:
        self.v = np.sort(values.astype(np.float64))
        self.s1 = np.concatenate([[0.0], np.cumsum(self.v)])
        self.s2 = np.concatenate([[0.0], np.cumsum(self.v ** 2)])
        self.zero_from, self.zero_to = np.searchsorted(self.v, 0.0, "left"), np.searchsorted(self.v, 0.0, "right")

    def error(self, low: np.ndarray, high: np.ndarray, steps: int) -> np.ndarray:
        """Mean squared error of quantizing the values to ``steps`` steps over ``[low, high]`` (arrays of ranges)."""
        n = len(self.v)
        k = np.searchsorted(self.v, low, "left")
        j = np.searchsorted(self.v, high, "right")
        below = self.s2[k] - 2 * low * self.s1[k] + k * low ** 2
        above = (self.s2[n] - self.s2[j]) - 2 * high * (self.s1[n] - self.s1[j]) + (n - j) * high ** 2
        zeros = np.clip(np.minimum(j, self.zero_to) - np.maximum(k, self.zero_from), 0, None)
        inside = (j - k) - zeros
        step = (high - low) / steps
        return (below + above + inside * step ** 2 / 12) / n


def kl_threshold(magnitudes: np.ndarray, bins: int = 2048, levels: int = 128) -> float:
    """TensorRT's entropy calibration: the ``|x|`` threshold whose 128-level quantized histogram loses the least
    information (KL divergence) against the clipped original."""
    top = float(magnitudes.max())
    if top <= 0:
        return 0.0
    hist, edges = np.histogram(magnitudes, bins=bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best, best_kl = top, math.inf
    for i in range(levels, bins + 1, 16):
        reference = hist[:i].copy()
        reference[-1] += hist[i:].sum()
        bounds = np.linspace(0, i, levels + 1).astype(int)
        which = np.repeat(np.arange(levels), np.diff(bounds))
        live = hist[:i] > 0
        mass = np.add.reduceat(hist[:i], bounds[:-1])
        count = np.add.reduceat(live.astype(np.float64), bounds[:-1])
        expanded = np.where(live, (mass / np.maximum(count, 1))[which], 0.0)
        p, q = reference / reference.sum(), expanded / max(expanded.sum(), 1e-30)
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best, best_kl = float(edges[i]), kl
    return best


def _percentile(ordered: np.ndarray, p: float) -> float:
    return float(ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))])


def _candidates(values: _Values, low: float, high: float, symmetric: bool) -> dict[str, tuple[float, float]]:
    v = values.v
    if symmetric:
        magnitudes = np.sort(np.abs(v))
        found = {"minmax": (low, high)}
        for p in PERCENTILES:
            amax = _percentile(magnitudes, p)
            found[f"p{p:g}"] = (-amax, amax)
        amax = kl_threshold(magnitudes)
        found["entropy"] = (-amax, amax)
        return found
    found = {"minmax": (low, high)}
    for p in PERCENTILES:
        found[f"p{p:g}"] = (min(_percentile(v, 100 - p), 0.0), max(_percentile(v, p), 0.0))
    amax = kl_threshold(np.abs(v))
    found["entropy"] = (max(low, -amax), min(high, amax))
    return found


def choose(values: np.ndarray, low: float, high: float, symmetric: bool) -> Choice:
    """The least-error range for a tensor whose calibrated (min-max) range is ``[low, high]``, from a sample of its values.

    ``symmetric``: signed INT8 with zero point 0 (TensorRT), else unsigned INT8 over a range holding 0.
    """
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if symmetric:
        amax = max(-low, high)
        low, high = -amax, amax
    sample = _Values(values.ravel())
    steps = 254 if symmetric else 255
    found = _candidates(sample, low, high, symmetric)
    if symmetric:
        lows, highs = -high * _CLIPS, high * _CLIPS
    else:
        lows, highs = (g.ravel() for g in np.meshgrid(low * _CLIPS, high * _CLIPS))
    errors = sample.error(lows, highs, steps)
    best = int(np.argmin(errors))
    found["mse"] = (float(lows[best]), float(highs[best]))
    scored = {name: float(sample.error(np.array([lo]), np.array([hi]), steps)[0]) for name, (lo, hi) in found.items()}
    method = min(scored, key=scored.__getitem__)
    if scored[method] > (1 - MIN_GAIN) * scored["minmax"]:
        method = "minmax"
    chosen = found[method]
    return Choice(chosen[0], chosen[1], method, scored[method] / max(scored["minmax"], 1e-30))


def tensor_samples(model: onnx.ModelProto, names: list[str], samples: list[Sample], seed: int = 0) -> dict[str, np.ndarray]:
    """Up to :data:`SAMPLED_VALUES` values of each float tensor in ``names``, drawn evenly from every sample."""
    rng = np.random.default_rng(seed)
    per_sample = max(1, SAMPLED_VALUES // max(len(samples), 1))
    kept: dict[str, list[np.ndarray]] = {}
    for values in stream(model, names, samples):
        for name, value in values.items():
            flat = value.ravel()
            if flat.size > per_sample:
                flat = flat[rng.integers(0, flat.size, per_sample)]
            if flat.size:
                kept.setdefault(name, []).append(flat)
    return {name: np.concatenate(parts) for name, parts in kept.items()}


def choose_ranges(model: onnx.ModelProto, ranges: Any, samples: list[Sample], symmetric: bool) -> tuple[Any, dict[str, Choice]]:
    """ONNX Runtime ``TensorsData`` with every float activation's range chosen by :func:`choose`, and the choices.

    ``ranges``: the min-max calibration (``TensorsData``) of ``model`` for the same symmetry.
    """
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    float_inputs = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    made = {out for node in model.graph.node for out in node.output}
    names = sorted(n for n in ranges.data if n in made or n in float_inputs)  # calibration's order varies by run
    values = tensor_samples(model, names, samples)
    data = dict(ranges.data)
    choices: dict[str, Choice] = {}
    for name, sample in values.items():
        if sample.dtype.kind != "f" or not np.isfinite(sample).all():
            continue
        lo, hi = ranges.data[name].range_value
        choice = choose(sample, float(np.min(lo)), float(np.max(hi)), symmetric)
        choices[name] = choice
        data[name] = TensorData(lowest=np.float32(choice.low), highest=np.float32(choice.high))
    return TensorsData(ranges.calibration_method, data), choices


def summary(choices: dict[str, Choice]) -> dict[str, int]:
    """How many tensors kept each method's range."""
    return dict(Counter(c.method for c in choices.values()).most_common())
