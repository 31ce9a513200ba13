"""Small but realistic ONNX models, built with onnx.helper, shaped like what real exporters write.

Each builder returns a checked ``onnx.ModelProto``; ``save`` writes one to disk. The models are tiny
(tens of KB) except ``wide_conv_net``, which is sized in megabytes for timing the cleanup.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# The IR version each opset first shipped with: exporters write the pair together.
IR_FOR_OPSET = {9: 4, 11: 6, 13: 7, 17: 8, 21: 10}

Dim = int | str | None


def _weights(seed: int = 0, scale: float = 0.3, **shapes: Sequence[int]) -> list[onnx.TensorProto]:
    rng = np.random.default_rng(seed)
    return [numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
            for name, shape in shapes.items()]


def _batchnorm(prefix: str, channels: int, seed: int) -> list[onnx.TensorProto]:
    rng = np.random.default_rng(seed)
    arrays = {
        "scale": rng.uniform(0.5, 1.5, channels), "bias": rng.standard_normal(channels) * 0.1,
        "mean": rng.standard_normal(channels) * 0.1, "var": rng.uniform(0.5, 1.5, channels),
    }
    return [numpy_helper.from_array(a.astype(np.float32), f"{prefix}.{k}") for k, a in arrays.items()]


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: list[onnx.TensorProto], opset: int, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgedl-tests")
    model.ir_version = IR_FOR_OPSET.get(opset, 8)
    onnx.checker.check_model(model)
    return model


def _image(name: str, dims: Sequence[Dim]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def conv_net(batch: Dim = "batch", size: int = 16, classes: int = 5, opset: int = 17) -> onnx.ModelProto:
    """Conv → BatchNorm → Relu → Identity → Conv → GlobalAveragePool → Flatten → Gemm → Softmax.

    The BatchNorm and Identity are what a training-mode-free export still leaves behind; a
    folding pass removes both.
    """
    inits = _weights(1, w1=(8, 3, 3, 3), w2=(8, 8, 3, 3), fc_w=(classes, 8), fc_b=(classes,))
    inits += _batchnorm("bn1", 8, 2)
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"], ["b1"],
                         name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Identity", ["r1"], ["i1"], name="identity"),
        helper.make_node("Conv", ["i1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    return _model(nodes, [_image("images", [batch, 3, size, size])],
                  [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, classes])],
                  inits, opset, "conv_net")


def paddle_style_net() -> onnx.ModelProto:
    """A Paddle2ONNX-style segmentation head: ``x`` is [p2o.DynamicDimension.0, 3, height, width].

    The output keeps Paddle's habit of naming every dynamic dim ``p2o.DynamicDimension.N``.
    """
    inits = _weights(3, conv_w=(4, 3, 3, 3), conv_b=(4,), head_w=(2, 4, 1, 1))
    inits.append(numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "scales"))
    inits.append(numpy_helper.from_array(np.array([], np.float32), "roi"))
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv2d_0", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu_0"),
        helper.make_node("Conv", ["r", "head_w"], ["h"], name="conv2d_1"),
        helper.make_node("Resize", ["h", "roi", "scales"], ["up"], name="resize_0", mode="nearest"),
        helper.make_node("ArgMax", ["up"], ["seg"], name="argmax_0", axis=1, keepdims=0),
    ]
    out_dims = ["p2o.DynamicDimension.0", "p2o.DynamicDimension.1", "p2o.DynamicDimension.2"]
    return _model(nodes, [_image("x", ["p2o.DynamicDimension.0", 3, "height", "width"])],
                  [helper.make_tensor_value_info("seg", TensorProto.INT64, out_dims)], inits, 13, "paddle")


def weights_as_inputs_net() -> onnx.ModelProto:
    """An old (IR 3/4, opset 9) export that lists every weight as a graph input with an initializer."""
    inits = _weights(4, w=(6, 3, 3, 3), b=(6,), fc_w=(6, 3))
    inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    nodes = [
        helper.make_node("Conv", ["data", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Reshape", ["p", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc_w"], ["y"], name="fc"),
    ]
    weight_inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "old_export", [_image("data", [1, 3, 12, 12]), *weight_inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], producer_name="pytorch")
    model.ir_version = 4
    onnx.checker.check_model(model)
    return model


def opset_net(opset: int) -> onnx.ModelProto:
    """The same small net written for ``opset``: Unsqueeze, ReduceMean, Clip and Split change form across opsets."""
    inits = _weights(5, w=(4, 3, 3, 3))
    axes_as_input = opset >= 13
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    if opset >= 11:  # Clip bounds became inputs in opset 11
        inits += [numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(6.0, np.float32), "hi")]
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["act"], name="relu6"))
    else:
        nodes.append(helper.make_node("Clip", ["c"], ["act"], name="relu6", min=0.0, max=6.0))
    if opset >= 18:  # ReduceMean axes became an input in opset 18
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "hw_axes"))
        nodes.append(helper.make_node("ReduceMean", ["act", "hw_axes"], ["m"], name="gap", keepdims=0))
    else:
        nodes.append(helper.make_node("ReduceMean", ["act"], ["m"], name="gap", axes=[2, 3], keepdims=0))
    if axes_as_input:  # Unsqueeze and Split take axes/sizes as inputs from opset 13
        inits += [numpy_helper.from_array(np.array([2], np.int64), "ax2"),
                  numpy_helper.from_array(np.array([2, 2], np.int64), "halves")]
        nodes += [helper.make_node("Unsqueeze", ["m", "ax2"], ["u"], name="unsqueeze"),
                  helper.make_node("Split", ["u", "halves"], ["left", "right"], name="split", axis=1)]
    else:
        nodes += [helper.make_node("Unsqueeze", ["m"], ["u"], name="unsqueeze", axes=[2]),
                  helper.make_node("Split", ["u"], ["left", "right"], name="split", axis=1, split=[2, 2])]
    nodes.append(helper.make_node("Sub", ["left", "right"], ["diff"], name="sub"))
    return _model(nodes, [_image("images", ["N", 3, 8, 8])],
                  [helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["N", 2, 1])], inits, opset,
                  f"opset{opset}")


def shape_subgraph_net(opset: int = 17) -> onnx.ModelProto:
    """TorchScript-style ``x.view(x.size(0), -1)`` and a dynamic ``F.interpolate`` size.

    Shape → Gather → Unsqueeze → Concat → Reshape computes the flatten shape, and
    Shape → Slice → Mul → Concat → Resize computes the upsampled size, at run time;
    once the input shape is fixed both chains fold to constants.
    """
    inits = _weights(6, w=(4, 3, 3, 3), fc_w=(4 * 8 * 8, 3))
    consts = {"zero": np.array(0, np.int64), "minus_one": np.array([-1], np.int64), "ax0": np.array([0], np.int64),
              "s2": np.array([2], np.int64), "s4": np.array([4], np.int64), "two": np.array([2, 2], np.int64)}
    inits += [numpy_helper.from_array(v, k) for k, v in consts.items()]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        # upsample back by 2: sizes = concat(shape(r)[0:2], shape(r)[2:4] * 2)
        helper.make_node("Shape", ["r"], ["r_shape"], name="/Shape"),
        helper.make_node("Slice", ["r_shape", "ax0", "s2"], ["nc"], name="/Slice"),
        helper.make_node("Slice", ["r_shape", "s2", "s4"], ["hw"], name="/Slice_1"),
        helper.make_node("Mul", ["hw", "two"], ["hw2"], name="/Mul"),
        helper.make_node("Concat", ["nc", "hw2"], ["sizes"], name="/Concat", axis=0),
        helper.make_node("Resize", ["r", "", "", "sizes"], ["up"], name="/Resize", mode="nearest"),
        # flatten with the batch size read at run time
        helper.make_node("Shape", ["c"], ["c_shape"], name="/Shape_1"),
        helper.make_node("Gather", ["c_shape", "zero"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus_one"], ["flat_shape"], name="/Concat_1", axis=0),
        helper.make_node("Reshape", ["c", "flat_shape"], ["flat"], name="/Reshape"),
        helper.make_node("MatMul", ["flat", "fc_w"], ["logits"], name="/fc/MatMul"),
    ]
    return _model(nodes, [_image("input", ["batch", 3, 16, 16])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
                   helper.make_tensor_value_info("up", TensorProto.FLOAT, ["batch", 4, 16, 16])],
                  inits, opset, "main_graph")


def wide_conv_net(megabytes: float = 10.0, size: int = 32) -> onnx.ModelProto:
    """A ResNet-ish stack whose weights total about ``megabytes`` MB, for timing the cleanup."""
    channels = 64
    per_layer = channels * channels * 9 * 4 + 4 * channels * 4
    layers = max(1, round(megabytes * 1e6 / per_layer))
    inits = _weights(7, stem=(channels, 3, 3, 3))
    nodes = [helper.make_node("Conv", ["images", "stem"], ["x0"], name="stem", pads=[1, 1, 1, 1])]
    for i in range(layers):
        inits += _weights(100 + i, 0.02, **{f"w{i}": (channels, channels, 3, 3)})
        inits += _batchnorm(f"bn{i}", channels, 200 + i)
        nodes += [
            helper.make_node("Conv", [f"x{i}", f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", [f"c{i}", *(f"bn{i}.{k}" for k in ("scale", "bias", "mean", "var"))],
                             [f"b{i}"], name=f"bn{i}"),
            helper.make_node("Relu", [f"b{i}"], [f"r{i}"], name=f"relu{i}"),
            helper.make_node("Add", [f"r{i}", f"x{i}"], [f"x{i + 1}"], name=f"res{i}"),
        ]
    nodes.append(helper.make_node("GlobalAveragePool", [f"x{layers}"], ["features"], name="pool"))
    return _model(nodes, [_image("images", ["batch", 3, size, size])],
                  [_image("features", ["batch", channels, 1, 1])], inits, 17, "wide")


def float16_net() -> onnx.ModelProto:
    """A half-precision export: float16 input, weights and output (Conv → Relu → linear Resize)."""
    weights = np.random.default_rng(8).standard_normal((4, 3, 3, 3)).astype(np.float16)
    inits = [numpy_helper.from_array(weights, "w"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Resize", ["r", "", "scales"], ["y"], name="up", mode="linear")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 4, 16, 16])], inits, 17, "fp16")


def qdq_net() -> onnx.ModelProto:
    """An already-quantized (Q/DQ) export: int8 weights behind DequantizeLinear, as TensorRT wants them."""
    weights = np.random.default_rng(9).integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(weights, "w_q"),
             numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "zero"),
             numpy_helper.from_array(np.array(0.05, np.float32), "x_scale")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "zero"], ["x_q"], name="x_quant"),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "zero"], ["x_dq"], name="x_dequant"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "zero"], ["w_dq"], name="w_dequant"),
             helper.make_node("Conv", ["x_dq", "w_dq"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return _model(nodes, [_image("x", [1, 3, 8, 8])], [_image("y", [1, 4, 8, 8])], inits, 13, "qdq")


def save(model: onnx.ModelProto, path: Path, external_data: bool = False) -> Path:
    """Write ``model`` to ``path``; with ``external_data`` the weights go to ``path.name + '.data'`` beside it."""
    if external_data:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)  # saving as external data rewrites the tensors it is given
        onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def random_feed(model: onnx.ModelProto, seed: int = 0, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Random inputs of the declared dtype for every real input; a symbolic dim is ``dims[name]`` or 2."""
    rng = np.random.default_rng(seed)
    weights = {t.name for t in model.graph.initializer}
    feed = {}
    for value in model.graph.input:
        if value.name in weights:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else (dims or {}).get(d.dim_param, 2)
                 for d in value.type.tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feed[value.name] = rng.standard_normal(shape).astype(dtype)
    return feed
