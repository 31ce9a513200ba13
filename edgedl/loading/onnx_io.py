"""An ONNX graph's inputs and outputs as the manifest records them: names, dtypes, dims, a guessed layout."""

from __future__ import annotations

import onnx
from onnx import helper

from edgedl.manifest import TensorInfo


def describe_io(model: onnx.ModelProto) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The model's real inputs (initializers excluded) and outputs, with dims as ints or symbol names.

    A dynamic dim without a name is ``"?"``. 4-D inputs get a guessed layout: ``NCHW`` when
    dim 1 is 1 or 3, else ``NHWC`` when the last dim is, else none.
    """
    weights = {t.name for t in model.graph.initializer}
    inputs = [_info(v) for v in model.graph.input if v.name not in weights]
    for info in inputs:
        info.layout = _guess_layout(info.shape)
    return inputs, [_info(v) for v in model.graph.output]


def _info(value: onnx.ValueInfoProto) -> TensorInfo:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return TensorInfo(value.name, str(kind), [])
    tensor = value.type.tensor_type
    shape: list[int | str] = [dim_value(d) for d in tensor.shape.dim]
    return TensorInfo(value.name, _dtype_name(tensor.elem_type), shape)


def dim_value(dim: onnx.TensorShapeProto.Dimension) -> int | str:
    """A dim as its int, its symbol name, or ``?`` when dynamic and unnamed."""
    if dim.HasField("dim_value") and dim.dim_value >= 0:
        return dim.dim_value
    return dim.dim_param or "?"


def _dtype_name(elem_type: int) -> str:
    if elem_type == onnx.TensorProto.STRING:
        return "string"
    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _guess_layout(shape: list[int | str]) -> str | None:
    if len(shape) != 4:
        return None
    if shape[1] in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3):
        return "NHWC"
    return None
