"""Bias correction: take back the mean shift INT8 puts on each convolution's output channels.

Rounding weights to INT8 and clipping or rounding a conv's input shifts the mean of each output channel
(Nagel et al. 2019; Finkelstein et al. 2019, "Fighting Quantization Bias With Bias"): a systematic
error that later layers amplify. For every Conv whose input has a calibrated range, the shift is

    E[conv(W_q, Q(x))] - E[conv(W, x)]   per output channel, on FP32 calibration inputs x,

with ``W_q`` the per-channel INT8 weights and ``Q`` the input's Q/DQ under the chosen ranges, and it is
subtracted from the float bias that the bias Q/DQ is derived from. Each layer's shift is measured
from FP32 inputs, so it is that layer's own and corrections do not compound down the network. The
means of a conv over its inputs are exact sums of per-tap window means (see
:meth:`~edgedl.converters.int8_grid.ConvGeometry.window_means`), so no convolution is run here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgedl.converters.activations import stream
from edgedl.converters.int8_grid import ConvGeometry, conv_output_means, fake_quant, quantized_weight
from edgedl.types import Sample


@dataclass(frozen=True)
class _Layer:
    node: onnx.NodeProto
    weight: np.ndarray
    geometry: ConvGeometry
    low: float
    high: float


def _layers(model: onnx.ModelProto, ranges: Any) -> list[_Layer]:
    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    found = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits or node.input[0] not in ranges.data:
            continue
        if len(node.input) > 2 and node.input[2] and (node.input[2] not in inits or uses[node.input[2]] != 1):
            continue
        geometry = ConvGeometry.of(node)
        weight = numpy_helper.to_array(inits[node.input[1]])
        if geometry is None or weight.ndim != 4:
            continue
        lo, hi = ranges.data[node.input[0]].range_value
        found.append(_Layer(node, weight, geometry, float(np.min(lo)), float(np.max(hi))))
    return found


def bias_shifts(model: onnx.ModelProto, ranges: Any, samples: list[Sample], symmetric: bool) -> dict[str, np.ndarray]:
    """Per Conv node name, the mean shift INT8 puts on each output channel (quantized minus FP32)."""
    layers = _layers(model, ranges)
    inputs = sorted({layer.node.input[0] for layer in layers})
    sums: dict[str, np.ndarray] = {}
    count = 0
    for values in stream(model, inputs, samples):
        count += 1
        for layer in layers:
            x = values[layer.node.input[0]]
            kernel = (layer.weight.shape[2], layer.weight.shape[3])
            exact = conv_output_means(layer.weight, layer.geometry.window_means(x, kernel), layer.geometry.group)
            seen = fake_quant(x, layer.low, layer.high, symmetric)
            quantized = conv_output_means(quantized_weight(layer.weight), layer.geometry.window_means(seen, kernel),
                                          layer.geometry.group)
            shift = quantized - exact
            sums[layer.node.name] = sums.get(layer.node.name, 0.0) + shift
    return {name: total / max(count, 1) for name, total in sums.items()}


def correct_biases(model: onnx.ModelProto, ranges: Any, samples: list[Sample], symmetric: bool) -> tuple[onnx.ModelProto, float]:
    """A copy of ``model`` whose conv biases take back the INT8 mean shift, and the largest ``|shift|`` taken back.

    ``ranges``: the activation ranges (``TensorsData``) the model will be quantized with; ``symmetric``
    as the scheme's activations."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    shifts = bias_shifts(copy, ranges, samples, symmetric)
    inits = {i.name: i for i in copy.graph.initializer}
    largest = 0.0
    for node in copy.graph.node:
        shift = shifts.get(node.name)
        if shift is None:
            continue
        largest = max(largest, float(np.abs(shift).max()))
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(inits[node.input[2]])
            inits[node.input[2]].CopyFrom(numpy_helper.from_array((bias - shift).astype(bias.dtype), node.input[2]))
        else:
            name = f"{node.name}_corrected_bias"
            copy.graph.initializer.append(numpy_helper.from_array((-shift).astype(np.float32), name))
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = name
    return copy, largest
