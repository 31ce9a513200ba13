"""Change an image input's layout inside the graph (NHWC ↔ NCHW) with one Transpose, keeping its name."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

# perm applied to the new input to get back the layout the model computes in
_TO_MODEL = {("NCHW", "NHWC"): [0, 2, 3, 1], ("NHWC", "NCHW"): [0, 3, 1, 2]}
_PERMUTE_SHAPE = {("NCHW", "NHWC"): [0, 3, 1, 2], ("NHWC", "NCHW"): [0, 2, 3, 1]}


def set_input_layout(proto: onnx.ModelProto, name: str, model_layout: str, wanted: str) -> None:
    """Make 4-D input ``name`` (in ``model_layout``) arrive in ``wanted`` layout; a Transpose restores the original.

    Optimizers fold the Transpose into the graph's own layout transposes where they meet
    (Keras-on-torch graphs start by transposing NHWC to NCHW for each convolution).
    """
    if model_layout == wanted:
        return
    value = next(v for v in proto.graph.input if v.name == name)
    inner = f"{name}__{model_layout.lower()}"
    for node in proto.graph.node:
        node.input[:] = [inner if i == name else i for i in node.input]
    for output in proto.graph.output:
        if output.name == name:  # an input passed straight through: keep the graph valid
            output.name = inner
    dims = list(value.type.tensor_type.shape.dim)
    old = [onnx.TensorShapeProto.Dimension() for _ in dims]
    for copy, dim in zip(old, dims, strict=True):
        copy.CopyFrom(dim)
    for axis, source_axis in enumerate(_PERMUTE_SHAPE[(wanted, model_layout)]):
        dims[axis].CopyFrom(old[source_axis])
    transpose = helper.make_node("Transpose", [name], [inner], name=f"/{name}/to_{model_layout}",
                                 perm=_TO_MODEL[(wanted, model_layout)])
    proto.graph.node.insert(0, transpose)


def to_model_layout(array: np.ndarray, model_layout: str, wanted: str) -> np.ndarray:
    """An input array in ``wanted`` layout rearranged into the layout the source model computes in."""
    if model_layout == wanted:
        return array
    return np.ascontiguousarray(np.transpose(array, _TO_MODEL[(wanted, model_layout)]))


def from_model_layout(array: np.ndarray, model_layout: str, wanted: str) -> np.ndarray:
    """An input array in the source model's layout rearranged into ``wanted`` layout."""
    if model_layout == wanted:
        return array
    return np.ascontiguousarray(np.transpose(array, _PERMUTE_SHAPE[(wanted, model_layout)]))
