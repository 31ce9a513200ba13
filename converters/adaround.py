"""AdaRound: round each weight up or down as the layer's output needs, not to the nearest INT8 value.

Rounding every weight to its nearest grid point minimizes each weight's error, not the layer's: the
errors of the weights that read the same input add up (Nagel et al. 2020, "Up or Down? Adaptive
Rounding for Post-Training Quantization"). AdaRound learns, per weight, a soft choice between rounding
down and up, ``h(V)`` in [0, 1], minimizing ``||W~ Q(x) - W x||^2`` on calibration inputs plus a
regularizer that drives every ``h`` to 0 or 1 as training goes on; then each weight takes its choice.

Here it runs layer by layer on the CPU with torch (an optional dependency), on the convolutions whose
nearest rounding costs most output error, on a sample of their input patches (FP32 inputs on the
target side, the inputs' own Q/DQ on the quantized side). The result is written back as float weights
that already sit on the INT8 grid (integer times the per-channel scale, the largest weight of each
channel left where it was so the quantizer computes the same scale), so the Q/DQ the quantizer adds
reproduces them exactly.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgedl.converters.activations import stream
from edgedl.converters.int8_grid import SYMMETRIC_MAX, ConvGeometry, fake_quant, quantized_weight, weight_scales
from edgedl.errors import MissingDependencyError
from edgedl.types import Sample

log = logging.getLogger("edgedl.recover")

#: Layers optimized at most (those whose nearest rounding does the most harm), steps per layer, patches per layer.
MAX_LAYERS = 6
ITERATIONS = 300
PATCHES = 1024
#: Rectified sigmoid stretch (the paper's zeta and gamma), regularizer weight, and its exponent's annealing.
_ZETA, _GAMMA, _LAMBDA, _BETA = 1.1, -0.1, 0.01, (20.0, 2.0)
_WARMUP = 0.2


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("adaptive rounding needs PyTorch", fix="pip install torch") from None
    return torch


@dataclass
class Layer:
    """One Conv's rounding problem: weights, their per-channel scales, and input patches with targets."""

    node: str
    weight_name: str
    weight: np.ndarray  # [O, I/g, kh, kw]
    group: int
    patches: np.ndarray  # [g, I/g * kh * kw, P], the inputs as quantized
    target: np.ndarray  # [g, O/g, P], FP32's outputs (before bias)

    def output_error(self, weight: np.ndarray) -> float:
        """Squared output error of ``weight`` on the patches, relative to the output's energy."""
        out = np.einsum("gok,gkp->gop", self.grouped(weight), self.patches)
        return float(((out - self.target) ** 2).sum() / max((self.target ** 2).sum(), 1e-30))

    def grouped(self, weight: np.ndarray) -> np.ndarray:
        return weight.reshape(self.group, weight.shape[0] // self.group, -1)


def _patches(torch: Any, x: np.ndarray, kernel: tuple[int, int], geometry: ConvGeometry, picks: np.ndarray) -> np.ndarray:
    """``[C * kh * kw, len(picks)]``: the input patches at flat output positions ``picks`` (batch of one)."""
    top, left, bottom, right = geometry.pads
    tensor = torch.nn.functional.pad(torch.from_numpy(x), (left, right, top, bottom))
    columns = torch.nn.functional.unfold(tensor, kernel, dilation=geometry.dilations, stride=geometry.strides)
    return columns[0][:, torch.from_numpy(picks)].numpy()


def collect_layers(model: onnx.ModelProto, ranges: Any, samples: list[Sample], symmetric: bool, seed: int = 0) -> list[Layer]:
    """Every 2-D Conv with weight constants and a calibrated input, with sampled patches and FP32 targets."""
    torch = _torch()
    inits = {i.name: i for i in model.graph.initializer}
    shared = {name for name, n in Counter(i for node in model.graph.node for i in node.input).items() if n > 1}
    convs = []
    for node in model.graph.node:
        geometry = ConvGeometry.of(node) if node.op_type == "Conv" else None
        if geometry is None or len(node.input) < 2 or node.input[1] not in inits or node.input[0] not in ranges.data \
                or node.input[1] in shared:
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if weight.ndim == 4:
            convs.append((node, geometry, weight))
    rng = np.random.default_rng(seed)
    per_sample = max(1, PATCHES // max(len(samples), 1))
    exact: dict[str, list[np.ndarray]] = {}
    seen: dict[str, list[np.ndarray]] = {}
    for values in stream(model, sorted({n.input[0] for n, _, _ in convs}), samples):
        for node, geometry, weight in convs:
            x = values[node.input[0]][:1]
            kernel = (weight.shape[2], weight.shape[3])
            out_h, out_w = geometry.output_size(x.shape[2], x.shape[3], kernel)
            picks = rng.integers(0, out_h * out_w, min(per_sample, out_h * out_w))
            lo, hi = ranges.data[node.input[0]].range_value
            exact.setdefault(node.name, []).append(_patches(torch, x, kernel, geometry, picks))
            seen.setdefault(node.name, []).append(_patches(torch, fake_quant(x, float(np.min(lo)), float(np.max(hi)), symmetric),
                                                           kernel, geometry, picks))
    layers = []
    for node, geometry, weight in convs:
        if node.name not in exact:
            continue
        group = geometry.group
        fp, q = (np.concatenate(parts[node.name], axis=1).astype(np.float64) for parts in (exact, seen))
        fp, q = fp.reshape(group, -1, fp.shape[1]), q.reshape(group, -1, q.shape[1])
        w = weight.astype(np.float64)
        target = np.einsum("gok,gkp->gop", w.reshape(group, w.shape[0] // group, -1), fp)
        layers.append(Layer(node.name, node.input[1], weight, group, q, target))
    return layers


def _nearest(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = weight_scales(weight).reshape((-1,) + (1,) * (weight.ndim - 1))
    return np.clip(np.round(weight / scale), -SYMMETRIC_MAX, SYMMETRIC_MAX), scale


def round_layer(layer: Layer, iterations: int = ITERATIONS, seed: int = 0) -> np.ndarray:
    """The layer's weights with learned rounding, as floats on the INT8 grid (integers times the channel scale)."""
    torch = _torch()
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # problems this small run fastest on one thread, and convert shares the machine
    try:
        return _round(torch, layer, iterations)
    finally:
        torch.set_num_threads(threads)


def _round(torch: Any, layer: Layer, iterations: int) -> np.ndarray:
    weight = layer.weight.astype(np.float64)
    nearest, scale = _nearest(weight)
    floor = np.floor(weight / scale)
    rest = np.clip(weight / scale - floor, 0.0, 1.0)
    # Keep each channel's largest weight where nearest rounding puts it, so its scale does not change.
    flat = np.abs(weight).reshape(weight.shape[0], -1)
    pinned = np.zeros_like(flat, dtype=bool)
    pinned[np.arange(flat.shape[0]), flat.argmax(axis=1)] = True
    pinned = pinned.reshape(weight.shape)
    init = np.log((rest - _GAMMA) / (_ZETA - rest))  # h(V) == rest: start at the float weights
    v = torch.tensor(init, dtype=torch.float32, requires_grad=True)
    base = torch.from_numpy(floor.astype(np.float32))
    step = torch.from_numpy(np.broadcast_to(scale, weight.shape).astype(np.float32))
    patches, target = torch.from_numpy(layer.patches.astype(np.float32)), torch.from_numpy(layer.target.astype(np.float32))
    energy = float((layer.target ** 2).mean()) or 1.0
    optimizer = torch.optim.Adam([v], lr=1e-2)
    warm = int(iterations * _WARMUP)
    for i in range(iterations):
        soft = torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0, 1)
        w = ((base + soft).clamp(-SYMMETRIC_MAX, SYMMETRIC_MAX) * step).reshape(layer.group, weight.shape[0] // layer.group, -1)
        loss = ((torch.bmm(w, patches) - target) ** 2).mean() / energy
        if i >= warm:
            beta = _BETA[1] + (_BETA[0] - _BETA[1]) * (1 - (i - warm) / max(iterations - warm, 1))
            loss = loss + _LAMBDA * (1 - (2 * soft - 1).abs() ** beta).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        up = (torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA >= 0.5).numpy()
    integers = np.where(pinned, nearest, np.clip(floor + up, -SYMMETRIC_MAX, SYMMETRIC_MAX))
    return (integers * scale).astype(layer.weight.dtype)


def adaround(model: onnx.ModelProto, ranges: Any, samples: list[Sample], symmetric: bool,
             max_layers: int = MAX_LAYERS) -> tuple[onnx.ModelProto, dict[str, tuple[float, float]]]:
    """A copy of ``model`` with learned rounding in the ``max_layers`` convolutions nearest rounding hurts most.

    Returns the copy and, per layer rounded, its relative output error with nearest and with learned
    rounding. A layer keeps its float weights where learned rounding does no better than nearest.
    """
    layers = collect_layers(model, ranges, samples, symmetric)
    scored = sorted(((layer.output_error(quantized_weight(layer.weight.astype(np.float64))), layer) for layer in layers),
                    key=lambda pair: -pair[0])
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inits = {i.name: i for i in copy.graph.initializer}
    gains: dict[str, tuple[float, float]] = {}
    for before, layer in scored[:max_layers]:
        rounded = round_layer(layer)
        after = layer.output_error(rounded.astype(np.float64))
        log.info("adaround %s: relative output error %.3g -> %.3g", layer.node, before, after)
        if after < before:
            inits[layer.weight_name].CopyFrom(numpy_helper.from_array(rounded, layer.weight_name))
            gains[layer.node] = (before, after)
    return copy, gains
