"""Find the layers that INT8 quantization damages most, so just those can stay in float.

For every calibrated activation, the FP32 model's real values are quantized and
dequantized with the scale calibration chose, and the damage is measured per
channel (a tensor with one huge channel and many small ones loses the small
ones entirely, which a whole-tensor error hides). Weights are measured the same
way. The ranking is cheap (one FP32 run); the repair loop then verifies each
candidate exclusion with the real accuracy gate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgedl.loading.ort_session import cpu_session
from edgedl.types import Sample

_WEIGHTED_OPS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1}


@dataclass(frozen=True)
class Damage:
    """How badly quantizing one tensor hurts, and which nodes to keep in float to avoid it."""

    tensor: str
    damage: float
    nodes: tuple[str, ...]


def _fake_quant(x: np.ndarray, lo: float, hi: float, signed: bool) -> np.ndarray:
    if signed:
        amax = max(abs(lo), abs(hi), 1e-12)
        scale = amax / 127.0
        return np.clip(np.round(x / scale), -127, 127) * scale
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255.0
    zero = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def channel_damage(x: np.ndarray, approx: np.ndarray, axis: int) -> float:
    """Mean over channels of the relative error ``|x_c - approx_c| / |x_c|`` (channels that are all zero skip)."""
    if x.ndim < 2:
        axis = 0
        x, approx = x.reshape(1, -1), approx.reshape(1, -1)
    xs = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    es = np.moveaxis(x - approx, axis, 0).reshape(x.shape[axis], -1)
    norms = np.linalg.norm(xs, axis=1)
    live = norms > 1e-12
    if not live.any():
        return 0.0
    return float(np.mean(np.linalg.norm(es, axis=1)[live] / norms[live]))


def _with_all_outputs(model: onnx.ModelProto, names: list[str]) -> bytes:
    """Serialized copy of ``model`` whose outputs include every tensor in ``names``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return copy.SerializeToString()


def rank_damage(model: onnx.ModelProto, ranges: Any, samples: list[Sample], signed: bool,
                quantizable: set[str] | None = None) -> list[Damage]:
    """Tensors (activations and weights) ordered from most to least damaged by INT8, with the nodes to exclude.

    ``ranges`` maps tensor names to objects with ``range_value`` (ORT ``TensorsData``) or to ``(lo, hi)``.
    ``quantizable`` limits the nodes considered (those the scheme quantizes); ``None`` means all named nodes.
    """
    producers: dict[str, str] = {}
    consumers: dict[str, list[str]] = defaultdict(list)
    for node in model.graph.node:
        if not node.name or (quantizable is not None and node.name not in quantizable):
            continue
        for out in node.output:
            producers[out] = node.name
        for inp in node.input:
            consumers[inp].append(node.name)
    initializers = {i.name: i for i in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}

    def bounds(name: str) -> tuple[float, float]:
        value = ranges.data[name] if hasattr(ranges, "data") else ranges[name]
        lo, hi = value.range_value if hasattr(value, "range_value") else value
        return float(np.asarray(lo).min()), float(np.asarray(hi).max())

    names = [n for n in (ranges.data if hasattr(ranges, "data") else ranges)
             if n not in initializers and (n in producers or n in consumers)]
    session = cpu_session(_with_all_outputs(model, [n for n in names if n not in graph_inputs]))
    fetch = [o.name for o in session.get_outputs()]
    runs = [dict(zip(fetch, session.run(fetch, s), strict=True)) for s in samples]
    for sample, run in zip(samples, runs, strict=True):
        run.update(sample)

    found: list[Damage] = []
    for name in names:
        lo, hi = bounds(name)
        values = [np.asarray(r[name], dtype=np.float32) for r in runs if name in r]
        if not values or values[0].dtype.kind != "f":
            continue
        damage = float(np.mean([channel_damage(v, _fake_quant(v, lo, hi, signed), 1) for v in values]))
        nodes = tuple(sorted(({producers[name]} if name in producers else set()) | set(consumers.get(name, []))))
        if nodes:
            found.append(Damage(name, damage, nodes))
    for node in model.graph.node:
        axis = _WEIGHTED_OPS.get(node.op_type)
        if axis is None or not node.name or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        if quantizable is not None and node.name not in quantizable:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        if weight.ndim < 2:
            continue
        per_channel = np.moveaxis(weight, axis, 0)
        amax = np.abs(per_channel.reshape(per_channel.shape[0], -1)).max(axis=1)
        scale = np.maximum(amax, 1e-12) / 127.0
        shaped = scale.reshape((-1,) + (1,) * (per_channel.ndim - 1))
        approx = np.clip(np.round(per_channel / shaped), -127, 127) * shaped
        found.append(Damage(node.input[1], channel_damage(per_channel, approx, 0), (node.name,)))
    return sorted(found, key=lambda d: d.damage, reverse=True)


def exclusion_steps(ranking: list[Damage]) -> list[list[str]]:
    """Growing sets of nodes to keep in float: the top 1, 2, 4, 8 … damaged tensors' nodes."""
    steps: list[list[str]] = []
    k = 1
    while True:
        chosen: set[str] = set()
        for item in ranking[:k]:
            chosen.update(item.nodes)
        if not steps or sorted(chosen) != steps[-1]:
            steps.append(sorted(chosen))
        if k >= len(ranking):
            return steps
        k *= 2
