"""A small network that plain INT8 breaks the way MobileNet-style networks break: a few activation channels far
wider than the rest (a per-channel affine after hard-swish, as PP-LCNet's), the float function unchanged."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedl.loading.ort_session import cpu_session

OUTLIER = 300.0


def outlier_net(seed: int = 0) -> onnx.ModelProto:
    """x -> 3x3 conv -> ReLU -> depthwise 3x3 -> HardSwish -> per-channel affine (two channels OUTLIER times
    wider) -> pointwise conv (its weights for those channels OUTLIER times smaller) -> ReLU -> 1x1 conv -> y.

    The FP32 function is that of a well-balanced network; per-tensor activation ranges are not."""
    rng = np.random.default_rng(seed)
    c = 8
    scale = rng.uniform(0.5, 1.5, (1, c, 1, 1))
    bias = rng.uniform(-0.2, 0.2, (1, c, 1, 1))
    pw = rng.standard_normal((16, c, 1, 1)) * 0.4
    for channel in (1, 5):
        scale[0, channel] *= OUTLIER
        bias[0, channel] *= OUTLIER
        pw[:, channel] /= OUTLIER
    arrays = {"stem.w": rng.standard_normal((c, 3, 3, 3)) * 0.4, "stem.b": rng.standard_normal(c) * 0.1,
              "dw.w": rng.standard_normal((c, 1, 3, 3)) * 0.5, "dw.b": rng.standard_normal(c) * 0.1,
              "affine.scale": scale, "affine.bias": bias, "pw.w": pw, "pw.b": rng.standard_normal(16) * 0.1,
              "head.w": rng.standard_normal((4, 16, 1, 1)) * 0.4, "head.b": np.zeros(4)}
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [
        helper.make_node("Conv", ["x", "stem.w", "stem.b"], ["s"], "stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["s_act"], "stem_relu"),
        helper.make_node("Conv", ["s_act", "dw.w", "dw.b"], ["d"], "dw", pads=[1, 1, 1, 1], group=c),
        helper.make_node("HardSwish", ["d"], ["h"], "hswish"),
        helper.make_node("Mul", ["h", "affine.scale"], ["m"], "affine_mul"),
        helper.make_node("Add", ["m", "affine.bias"], ["a"], "affine_add"),
        helper.make_node("Conv", ["a", "pw.w", "pw.b"], ["p"], "pw"),
        helper.make_node("Relu", ["p"], ["r"], "relu"),
        helper.make_node("Conv", ["r", "head.w", "head.b"], ["y"], "head"),
    ]
    graph = helper.make_graph(nodes, "outliers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def samples(n: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    """``n`` seeded inputs in 0..1."""
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def run(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The model's output for each sample, Q/DQ run as written (no CPU integer kernels)."""
    session = cpu_session(model.SerializeToString(), fuse_qdq=False)
    return [session.run(None, s)[0] for s in samples]


def _spread(peaks: np.ndarray) -> float:
    return float(peaks.max() / np.median(peaks))
