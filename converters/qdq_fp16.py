"""The float part of a Q/DQ model in FP16: INT8 where the Q/DQ pairs say so, FP16 everywhere else.

TensorRT 11 builds strongly typed networks only: a layer without Q/DQ runs in the type the ONNX file
gives it, so a Q/DQ model in FP32 would run its SiLUs, adds and heads in FP32. Converted here, the
model computes as TensorRT 10's INT8+FP16 flags made it compute (and as Model Optimizer writes its
``high_precision_dtype="fp16"`` models). FP16 Q/DQ scales need opset 19 (QuantizeLinear/DequantizeLinear-19
accept float16), so an older model is converted to opset 19 first.
"""

from __future__ import annotations

import onnx
from onnx import version_converter

from edgedl.converters.fp16 import to_fp16

#: The first opset whose QuantizeLinear and DequantizeLinear take float16 inputs and scales.
FP16_QDQ_OPSET = 19


def default_opset(model: onnx.ModelProto) -> int:
    """The model's version of the default (ai.onnx) operator set."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def half_float_part(model: onnx.ModelProto, keep_fp32: list[str]) -> onnx.ModelProto:
    """A copy of the Q/DQ ``model`` whose float tensors and Q/DQ scales are FP16, inputs and outputs float32,
    and the ``keep_fp32`` nodes (those FP16 would overflow in) float32."""
    if default_opset(model) < FP16_QDQ_OPSET:
        model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    return to_fp16(model, keep_fp32)
