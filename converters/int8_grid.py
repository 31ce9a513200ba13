"""The INT8 grid ONNX Runtime's quantizer puts tensors on, reproduced in numpy.

Activations: unsigned 8-bit over a range holding zero (zero point rounded), or signed symmetric
(-127..127, zero point 0, TensorRT's). Weights: signed symmetric per output channel, scale
``max|w| / 127``. The recovery techniques predict what quantization will do with these, so they
must match the quantizer's arithmetic, not merely resemble it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

#: Largest integer magnitude of a symmetric INT8 value (-127..127; -128 is left out, as ONNX Runtime does).
SYMMETRIC_MAX = 127


def fake_quant(x: np.ndarray, low: float, high: float, symmetric: bool) -> np.ndarray:
    """``x`` quantized to INT8 over ``[low, high]`` and dequantized, as a QuantizeLinear/DequantizeLinear pair does."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if symmetric:
        scale = max(-low, high, 1e-30) / SYMMETRIC_MAX
        return (np.clip(np.round(x / scale), -SYMMETRIC_MAX, SYMMETRIC_MAX) * scale).astype(np.float32)
    scale = max(high - low, 1e-30) / 255.0
    zero = np.clip(np.round(-low / scale), 0, 255)
    return ((np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


def weight_scales(weight: np.ndarray) -> np.ndarray:
    """Per output channel (axis 0) scales of symmetric INT8 weights; 1 where a channel is all zero."""
    amax = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1).astype(np.float64)
    return np.where(amax > 0, amax / SYMMETRIC_MAX, 1.0)


def quantized_weight(weight: np.ndarray) -> np.ndarray:
    """``weight`` rounded to its nearest INT8 values per output channel, dequantized."""
    scale = weight_scales(weight).reshape((-1,) + (1,) * (weight.ndim - 1))
    return np.clip(np.round(weight / scale), -SYMMETRIC_MAX, SYMMETRIC_MAX) * scale


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D Conv node's strides, pads (top, left, bottom, right), dilations and group count."""

    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]
    group: int

    @classmethod
    def of(cls, node: onnx.NodeProto) -> ConvGeometry | None:
        """The geometry of a 2-D Conv with explicit padding, or None (auto_pad other than VALID/NOTSET, not 2-D)."""
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        auto = attrs.get("auto_pad", b"NOTSET")
        if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID"):
            return None
        strides, dilations = tuple(attrs.get("strides", (1, 1))), tuple(attrs.get("dilations", (1, 1)))
        pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
        if len(strides) != 2 or len(dilations) != 2 or len(pads) != 4:
            return None
        return cls(strides, pads, dilations, int(attrs.get("group", 1)))  # type: ignore[arg-type]

    def output_size(self, height: int, width: int, kernel: tuple[int, int]) -> tuple[int, int]:
        """The output's height and width for an input of ``height`` x ``width``."""
        sizes = []
        for size, pad_a, pad_b, k, d, s in ((height, self.pads[0], self.pads[2], kernel[0], self.dilations[0], self.strides[0]),
                                           (width, self.pads[1], self.pads[3], kernel[1], self.dilations[1], self.strides[1])):
            sizes.append((size + pad_a + pad_b - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    def window_means(self, x: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
        """``[C, kh, kw]``: for each input channel and kernel tap, the mean of the (zero-padded) input that tap
        reads over all output positions and the batch, so that the mean of ``conv(w, x)`` per output channel is
        ``sum(w * means)`` over its input channels and taps."""
        padded = np.pad(x, ((0, 0), (0, 0), (self.pads[0], self.pads[2]), (self.pads[1], self.pads[3])))
        out_h, out_w = self.output_size(x.shape[2], x.shape[3], kernel)
        means = np.empty((x.shape[1],) + kernel, np.float64)
        for a in range(kernel[0]):
            for b in range(kernel[1]):
                top, left = a * self.dilations[0], b * self.dilations[1]
                window = padded[:, :, top: top + self.strides[0] * (out_h - 1) + 1: self.strides[0],
                                left: left + self.strides[1] * (out_w - 1) + 1: self.strides[1]]
                means[:, a, b] = window.mean(axis=(0, 2, 3))
        return means


def conv_output_means(weight: np.ndarray, means: np.ndarray, group: int) -> np.ndarray:
    """Per output channel, ``sum(weight * means)`` over the channel's group of inputs and its taps."""
    out_channels, per_group = weight.shape[0], weight.shape[1]
    grouped = means.reshape(group, per_group, -1)
    flat = weight.reshape(group, out_channels // group, per_group, -1)
    return np.einsum("gock,gck->go", flat, grouped).reshape(out_channels)
