"""A tiny image classifier built with onnx.helper, for fast CLI and bundle tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_classifier(path: Path, batch: str | int = "batch", size: int = 16, classes: int = 4) -> Path:
    """Conv → Relu → GlobalAveragePool → Flatten → Gemm, input ``images`` [batch,3,size,size]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((classes, 8)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32) * 0.1, "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p1"], name="pool"),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten"),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def fragile(path: Path, size: int = 16) -> Path:
    """A model plain INT8 wrecks: ``conv1`` emits one channel ~1000x larger than the other seven.

    Per-tensor activation quantization of ``conv1``'s output spends the whole int8 range on the
    loud channel and rounds the seven quiet ones (the only ones ``mix`` reads) to zero. Keeping
    the nodes around that one tensor in float repairs it.
    """
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    w1[0] *= 1000.0
    w2 = rng.standard_normal((4, 8, 1, 1)).astype(np.float32)
    w2[:, 0] = 0.0  # the loud channel does not reach the output
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["loud"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["loud", "w2"], ["mixed"], name="mix"),
        helper.make_node("Relu", ["mixed"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["features"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "fragile", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
