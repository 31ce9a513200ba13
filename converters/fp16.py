"""FP16 variants: half-precision weights and math, float32 at the model's edges.

Inputs and outputs stay float32 (cameras and post-processing speak float32),
and nodes whose calibrated activations approach FP16's limit (65504) stay in
float32 so they cannot overflow to inf.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

#: Activations above this magnitude leave too little headroom below 65504 for the ops that follow.
FP16_SAFE_MAGNITUDE = 8192.0


def overflowing_nodes(model: onnx.ModelProto, magnitudes: Mapping[str, float]) -> list[str]:
    """Names of nodes that produce or consume a tensor whose observed magnitude is unsafe in FP16."""
    hot = {name for name, value in magnitudes.items() if value > FP16_SAFE_MAGNITUDE}
    return [n.name for n in model.graph.node if hot.intersection(n.output) or hot.intersection(n.input)]


def to_fp16(model: onnx.ModelProto, keep_fp32: list[str]) -> onnx.ModelProto:
    """An FP16 copy of ``model`` with float32 inputs/outputs and ``keep_fp32`` nodes left in float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_fp32 or None)
    _topological_order(half.graph)
    return half


def _topological_order(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after its inputs' producers (the converter appends its Casts at the end,
    which ONNX Runtime tolerates but the ONNX checker and TensorRT's parser expect in order)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        waiting = []
        for node in pending:
            (ordered if all(name in ready for name in node.input) else waiting).append(node)
            if ordered and ordered[-1] is node:
                ready.update(node.output)
        if len(waiting) == len(pending):  # a cycle or an input from an outer scope: keep the rest as it was
            ordered.extend(waiting)
            break
        pending = waiting
    del graph.node[:]
    graph.node.extend(ordered)
