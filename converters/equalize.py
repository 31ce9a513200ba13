"""Cross-layer equalization: give every channel of a tensor a similar range, leaving the FP32 function as it was.

Per-tensor activation quantization gives all channels of a tensor one scale. When a few channels are
much wider than the rest (MobileNet-style depthwise blocks, learnable per-channel affines after an
activation, as PP-LCNet's), that scale leaves the narrow channels a handful of integer steps. Nagel et
al. (2019, "Data-Free Quantization Through Weight Equalization and Bias Correction") move such ranges
between layers: a tensor ``T`` made by a positively homogeneous chain (a conv, a per-channel affine
``x * a + b``, a ReLU after one of those) and read only by convolutions can be divided per channel by
``s > 0`` if every reader's weights for that input channel are multiplied by ``s``; the network computes
the same function. Zero padding stays zero, so any kernel size, stride and group count works.

Nagel's choice ``s = sqrt(r1 / r2)`` makes the channel's range and its readers' weight range meet in
the middle. Here ``r1`` is the channel's measured range on calibration data (what per-tensor activation
quantization sees; a depthwise conv's own weights are quantized per channel, so their range does not
matter) and ``r2`` the largest weight reading that channel, relative to the reader's largest.
Activations that are not positively homogeneous (hard-swish, SiLU, ReLU6 that clips) stop a chain:
the affine *after* them is where equalization then happens.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgedl.converters.activations import channel_peaks
from edgedl.types import Sample

#: How far one channel may be rescaled: beyond this a channel is dead or the measurement is noise.
MAX_SCALE = 1e4


@dataclass(frozen=True)
class _Edit:
    """Multiply initializer ``name`` along ``axis`` by per-channel factors (``expand``: first give it this shape)."""

    name: str
    axis: int
    expand: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Site:
    """A tensor that can be equalized: what dividing it changes upstream, what multiplies downstream."""

    tensor: str
    channels: int
    producer: tuple[_Edit, ...]
    readers: tuple[tuple[str, int, int], ...]  # (weight initializer, group, 0 for Conv / 1 for ConvTranspose)


class _Graph:
    """Producer, consumer and use-count look-ups over one graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        self.uses: Counter[str] = Counter()
        for node in graph.node:
            for name in node.input:
                self.uses[name] += 1
                self.readers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}

    def private(self, name: str) -> bool:
        """Whether ``name`` is read by exactly one node and is no graph output."""
        return self.uses[name] == 1 and name not in self.outputs

    def weight(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[name]) if name in self.inits and self.uses[name] == 1 else None


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _channel_edit(graph: _Graph, name: str, rank: int, channels: int) -> _Edit | None:
    """An edit scaling constant ``name`` per channel (axis 1 of a rank-``rank`` tensor), or None if it cannot."""
    value = graph.weight(name)
    if value is None:
        return None
    if value.size == 1:
        return _Edit(name, 0, (channels,) + (1,) * (rank - 2))
    axis = value.ndim - (rank - 1)  # the channel axis, broadcasting from the right
    if axis < 0 or value.shape[axis] != channels or value.size != channels:
        return None
    return _Edit(name, axis)


def _producer_edits(graph: _Graph, tensor: str, rank: int, channels: int) -> list[_Edit] | None:
    """How to divide ``tensor`` per channel by changing the constants that make it, or None."""
    node = graph.producer.get(tensor)
    if node is None:
        return None
    if node.op_type == "Conv" and len(node.input) >= 2:
        weight = graph.weight(node.input[1])
        if weight is None or weight.shape[0] != channels:
            return None
        edits = [_Edit(node.input[1], 0)]
        if len(node.input) > 2 and node.input[2]:
            if graph.weight(node.input[2]) is None:
                return None
            edits.append(_Edit(node.input[2], 0))
        return edits
    if node.op_type == "Relu" and graph.private(node.input[0]):
        return _producer_edits(graph, node.input[0], rank, channels)
    if node.op_type in ("Mul", "Add") and len(node.input) == 2:
        for const, other in ((node.input[1], node.input[0]), (node.input[0], node.input[1])):
            if const not in graph.inits:
                continue
            edit = _channel_edit(graph, const, rank, channels)
            if edit is None:
                return None
            if node.op_type == "Mul":  # (x * a) / s == x * (a / s), whatever x is
                return [edit]
            upstream = _producer_edits(graph, other, rank, channels) if graph.private(other) else None
            return None if upstream is None else upstream + [edit]
    return None


def find_sites(model: onnx.ModelProto) -> list[Site]:
    """Every tensor that a positively homogeneous chain makes and only convolutions with weight constants read."""
    graph = _Graph(model)
    sites = []
    for tensor, readers in graph.readers.items():
        if tensor in graph.outputs or tensor in graph.inits:
            continue
        found: list[tuple[str, int, int]] = []
        channels: set[int] = set()
        rank = None
        for node in readers:
            if node.op_type not in ("Conv", "ConvTranspose") or node.input[0] != tensor or tensor in node.input[1:]:
                break
            weight = graph.weight(node.input[1])
            if weight is None:
                break
            transposed = int(node.op_type == "ConvTranspose")
            channels.add(weight.shape[0] if transposed else weight.shape[1] * _group(node))
            rank = weight.ndim
            found.append((node.input[1], _group(node), transposed))
        else:
            if len(channels) != 1 or rank is None:
                continue
            count = channels.pop()
            producer = _producer_edits(graph, tensor, rank, count)
            if producer:
                sites.append(Site(tensor, count, tuple(producer), tuple(found)))
    return sites


def _reader_factors(weight: np.ndarray, group: int, transposed: int, scale: np.ndarray) -> np.ndarray:
    """Factors, broadcastable to ``weight``, that multiply every weight reading input channel ``c`` by ``scale[c]``."""
    tail = (1,) * (weight.ndim - 2)
    if transposed:  # [C_in, C_out / group, k...]
        return scale.reshape((-1, 1) + tail)
    out_channels, per_group = weight.shape[0], weight.shape[1]
    rows = np.arange(out_channels) // (out_channels // group) * per_group
    return scale[rows[:, None] + np.arange(per_group)[None, :]].reshape((out_channels, per_group) + tail)


def _reader_range(weight: np.ndarray, group: int, transposed: int, channels: int) -> np.ndarray:
    """Per input channel, the largest weight reading it, relative to the reader's largest weight."""
    if transposed:
        per_channel = np.abs(weight.reshape(channels, -1)).max(axis=1)
    else:
        out_channels, per_group = weight.shape[0], weight.shape[1]
        columns = np.abs(weight.reshape(group, out_channels // group, per_group, -1)).max(axis=(1, 3))
        per_channel = columns.reshape(channels)
    return per_channel / max(float(per_channel.max()), 1e-30)


def equalizing_scales(site: Site, peaks: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """Nagel's per-channel ``s = sqrt(r1 / r2)``, normalized to a geometric mean of 1; 1 where a channel is dead."""
    reach = np.max([_reader_range(weights[name], group, transposed, site.channels)
                    for name, group, transposed in site.readers], axis=0)
    live = (peaks > 1e-12 * max(float(peaks.max()), 1e-30)) & (reach > 1e-12)
    scale = np.ones(site.channels)
    if not live.any():
        return scale
    scale[live] = np.sqrt(peaks[live] / reach[live])
    scale[live] /= np.exp(np.mean(np.log(scale[live])))
    return np.clip(scale, 1 / MAX_SCALE, MAX_SCALE)


def apply_scales(model: onnx.ModelProto, site: Site, scale: np.ndarray) -> None:
    """Divide ``site``'s tensor by ``scale`` per channel and multiply its readers' weights to match, in place."""
    inits = {i.name: i for i in model.graph.initializer}

    def replace(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(inits[name]).dtype), name))

    for edit in site.producer:
        value = numpy_helper.to_array(inits[edit.name]).astype(np.float64)
        if edit.expand is not None:
            value = np.broadcast_to(value.reshape(-1)[0], edit.expand).copy()
        shape = [1] * value.ndim
        shape[edit.axis] = site.channels
        replace(edit.name, value / scale.reshape(shape))
    for name, group, transposed in site.readers:
        weight = numpy_helper.to_array(inits[name]).astype(np.float64)
        replace(name, weight * _reader_factors(weight, group, transposed, scale))


def equalize(model: onnx.ModelProto, samples: list[Sample]) -> tuple[onnx.ModelProto, dict[str, float]]:
    """An FP32-equivalent copy of ``model`` with every equalizable tensor's channels brought to similar ranges.

    Channel ranges are measured once on ``samples`` (FP32); dividing a tensor by known factors changes
    no other tensor, so the measurements stay valid while the sites are equalized in graph order.
    Returns the copy and, per equalized tensor, how much narrower its widest channel became relative to
    its median channel (the spread before over the spread after).
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    sites = find_sites(copy)
    if not sites:
        return copy, {}
    peaks = channel_peaks(copy, [s.tensor for s in sites], samples)
    spread: dict[str, float] = {}
    for site in sites:
        inits = {i.name: i for i in copy.graph.initializer}
        weights = {name: numpy_helper.to_array(inits[name]) for name, _, _ in site.readers}
        scale = equalizing_scales(site, peaks[site.tensor], weights)
        apply_scales(copy, site, scale)
        before, after = peaks[site.tensor], peaks[site.tensor] / scale
        spread[site.tensor] = _spread(before) / max(_spread(after), 1e-30)
    return copy, spread


def _spread(peaks: np.ndarray) -> float:
    """The widest channel's range over the median live channel's."""
    live = peaks[peaks > 0]
    return float(live.max() / np.median(live)) if live.size else 1.0
