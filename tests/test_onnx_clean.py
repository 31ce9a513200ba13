"""clean_model and describe_io: cleaned models compute the same thing, keep their names, and fold what folds."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_factory import (
    conv_net,
    float16_net,
    opset_net,
    paddle_style_net,
    qdq_net,
    random_feed,
    save,
    shape_subgraph_net,
    weights_as_inputs_net,
    wide_conv_net,
)

from edgedl.converters import onnx_clean
from edgedl.converters.onnx_clean import clean_model
from edgedl.errors import UsageError
from edgedl.loading.onnx_io import describe_io
from edgedl.loading.onnx_load import load_onnx


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def assert_same_outputs(original: onnx.ModelProto, cleaned: onnx.ModelProto, **dims: int) -> None:
    for seed in (0, 1):
        feed = random_feed(cleaned, seed, dims)
        for want, got in zip(run(original, feed), run(cleaned, feed), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def io_names(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    inputs, outputs = describe_io(model)
    return [t.name for t in inputs], [t.name for t in outputs]


def opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def all_dims_static(model: onnx.ModelProto) -> bool:
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    return all(d.HasField("dim_value") for v in values for d in v.type.tensor_type.shape.dim)


FACTORY_MODELS = {
    "conv_net": conv_net,
    "paddle_style": paddle_style_net,
    "weights_as_inputs": weights_as_inputs_net,
    "opset11": lambda: opset_net(11),
    "opset13": lambda: opset_net(13),
    "opset17": lambda: opset_net(17),
    "opset21": lambda: opset_net(21),
    "shape_subgraph": shape_subgraph_net,
}


@pytest.mark.parametrize("name", list(FACTORY_MODELS))
def test_cleaned_model_computes_the_same(name: str) -> None:
    original = FACTORY_MODELS[name]()
    cleaned = clean_model(original)
    onnx.checker.check_model(cleaned)
    assert_same_outputs(original, cleaned, height=8, width=12)
    assert io_names(cleaned) == io_names(original)
    assert opset(cleaned) >= 13
    assert len(cleaned.graph.node) <= len(original.graph.node)
    assert {n.domain for n in cleaned.graph.node} <= {"", "ai.onnx"}
    assert {o.domain for o in cleaned.opset_import} <= {"", "ai.onnx"}


def test_float16_stays_float16() -> None:
    """ONNX Runtime's offline optimizer would wrap these in Casts for its CPU kernels; TensorRT wants them bare."""
    original = float16_net()
    cleaned = clean_model(original)
    assert [n.op_type for n in cleaned.graph.node] == ["Conv", "Relu", "Resize"]
    assert describe_io(cleaned)[0][0].dtype == "float16"
    assert_same_outputs(original, cleaned)


def test_qdq_pairs_are_not_folded_away() -> None:
    cleaned = clean_model(qdq_net())
    ops = [n.op_type for n in cleaned.graph.node]
    assert ops.count("DequantizeLinear") == 2 and "QuantizeLinear" in ops
    assert {t.data_type for t in cleaned.graph.initializer if t.name == "w_q"} == {TensorProto.INT8}


@pytest.mark.parametrize("old, new", [(11, 13), (13, 13), (17, 17), (21, 21)])
def test_opset_below_13_is_upgraded_others_kept(old: int, new: int) -> None:
    assert opset(clean_model(opset_net(old))) == new


def test_failed_opset_upgrade_keeps_the_original(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def no_adapter(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
        raise RuntimeError("No Adapter For Upsample\nmore detail")

    monkeypatch.setattr(onnx.version_converter, "convert_version", no_adapter)
    original = opset_net(11)
    with caplog.at_level(logging.WARNING, logger="edgedl.convert"):
        cleaned = clean_model(original)
    assert opset(cleaned) == 11
    assert "No Adapter For Upsample" in caplog.text
    assert_same_outputs(original, cleaned)


def test_folding_failure_keeps_the_unfolded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxslim

    def broken(model: onnx.ModelProto, *args: object, **kwargs: object) -> onnx.ModelProto:
        model.graph.node.pop()  # a failing optimizer may have half-edited its argument already
        raise RuntimeError("optimizer bug")

    monkeypatch.setattr(onnxslim, "slim", broken)
    original = conv_net()
    cleaned = clean_model(original)
    assert len(cleaned.graph.node) == len(original.graph.node)
    assert_same_outputs(original, cleaned)


def test_batchnorm_and_identity_fold_away() -> None:
    cleaned = clean_model(conv_net())
    ops = [n.op_type for n in cleaned.graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops
    assert len(cleaned.graph.node) < len(conv_net().graph.node)


def test_fixed_shapes_fold_shape_arithmetic_and_become_static() -> None:
    original = shape_subgraph_net()
    dynamic = clean_model(original)
    fixed = clean_model(original, {"input": [1, 3, 16, 16]})
    assert len(fixed.graph.node) < len(dynamic.graph.node) < len(original.graph.node)
    assert not {"Shape", "Gather", "Concat"} & {n.op_type for n in fixed.graph.node}
    assert all_dims_static(fixed)
    assert [t.shape for t in describe_io(fixed)[1]] == [[1, 3], [1, 4, 16, 16]]
    feed = random_feed(fixed)
    for want, got in zip(run(original, feed), run(fixed, feed), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_symbolic_dims_stay_symbolic_when_not_fixed() -> None:
    inputs, outputs = describe_io(clean_model(paddle_style_net()))
    assert inputs[0].shape == ["p2o.DynamicDimension.0", 3, "height", "width"]
    assert outputs[0].shape[0] == "p2o.DynamicDimension.0"


def test_fixing_one_input_keeps_the_rest_dynamic() -> None:
    cleaned = clean_model(paddle_style_net(), {"x": [1, 3, 32, 48]})
    inputs, outputs = describe_io(cleaned)
    assert inputs[0].shape == [1, 3, 32, 48]
    assert outputs[0].shape == [1, 32, 48]
    assert all_dims_static(cleaned)


def test_negative_and_unset_dims_stay_dynamic() -> None:
    model = conv_net()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].Clear()
    dims[0].dim_value = -1
    dims[2].Clear()
    cleaned = clean_model(model)
    assert describe_io(cleaned)[0][0].shape == ["?", 3, "?", 16]
    feed = {"images": np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    np.testing.assert_allclose(run(cleaned, feed)[0], run(conv_net(), feed)[0], rtol=1e-4, atol=1e-5)


def test_weights_listed_as_inputs_become_initializers() -> None:
    original = weights_as_inputs_net()
    cleaned = clean_model(original)
    assert [v.name for v in cleaned.graph.input] == ["data"]
    assert cleaned.graph.initializer
    assert cleaned.ir_version >= 7  # opset 13 needs IR 7


def test_unused_nodes_and_initializers_are_removed() -> None:
    model = conv_net()
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(1000, np.float32), "orphan"))
    model.graph.node.append(helper.make_node("Relu", ["probs"], ["dangling"], name="dead_end"))
    cleaned = clean_model(model)
    assert "orphan" not in {t.name for t in cleaned.graph.initializer}
    assert "dead_end" not in {n.name for n in cleaned.graph.node}


def test_input_model_is_not_modified() -> None:
    model = weights_as_inputs_net()
    before = model.SerializeToString()
    clean_model(model, {"data": [1, 3, 12, 12]})
    assert model.SerializeToString() == before


def test_model_metadata_is_kept() -> None:
    model = conv_net()
    helper.set_model_props(model, {"names": "{0: 'cat', 1: 'dog'}", "stride": "32"})
    model.doc_string = "exported by a test"
    cleaned = clean_model(model)
    assert {p.key: p.value for p in cleaned.metadata_props} == {"names": "{0: 'cat', 1: 'dog'}", "stride": "32"}
    assert cleaned.doc_string == "exported by a test"


@pytest.mark.parametrize("shapes, expected", [
    ({"image": [1, 3, 16, 16]}, "no input 'image'"),
    ({"images": [1, 3, 16]}, "has 4 dims, the shape given has 3"),
    ({"images": [1, 4, 16, 16]}, "dim 1 is fixed at 3"),
    ({"images": [0, 3, 16, 16]}, "must be a positive integer"),
])
def test_bad_input_shapes_are_usage_errors(tmp_path: Path, shapes: dict[str, list[int]], expected: str) -> None:
    source = tmp_path / "net.onnx"
    with pytest.raises(UsageError) as exc_info:
        clean_model(conv_net(), shapes, source=source)
    message = str(exc_info.value)
    assert expected in message
    assert str(source) in message and "\n" not in message
    assert "images [batch,3,16,16]" in message  # lists the inputs with their shapes


def test_external_data_model_loads_and_cleans(tmp_path: Path) -> None:
    path = save(conv_net(), tmp_path / "net.onnx", external_data=True)
    cleaned = clean_model(load_onnx(path), {"images": [2, 3, 16, 16]}, source=path)
    assert_same_outputs(conv_net(), cleaned)
    assert all_dims_static(cleaned)


def test_over_2gb_path_works_through_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Models over the protobuf limit skip upgrade and folding, and infer and check through files."""
    monkeypatch.setattr(onnx_clean, "PROTOBUF_LIMIT", 1)
    monkeypatch.setattr(onnx_clean, "_fold", lambda m: pytest.fail("folding needs the whole model serialized"))
    path = save(shape_subgraph_net(), tmp_path / "net.onnx", external_data=True)
    cleaned = clean_model(load_onnx(path), {"input": [2, 3, 16, 16]}, source=path)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in cleaned.graph.initializer)
    assert describe_io(cleaned)[1][0].shape == [2, 3]
    assert_same_outputs(shape_subgraph_net(), cleaned)


def test_ten_megabyte_model_cleans_in_seconds() -> None:
    original = wide_conv_net(10.0)
    start = time.perf_counter()
    cleaned = clean_model(original, {"images": [1, 3, 32, 32]})
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"cleanup took {elapsed:.1f} s"
    assert "BatchNormalization" not in {n.op_type for n in cleaned.graph.node}
    assert_same_outputs(original, cleaned)


def test_describe_io_types_shapes_and_layouts() -> None:
    inputs = [
        helper.make_tensor_value_info("nchw", TensorProto.FLOAT, ["batch", 3, 224, 224]),
        helper.make_tensor_value_info("nhwc", TensorProto.UINT8, [1, 224, 224, 3]),
        helper.make_tensor_value_info("features", TensorProto.FLOAT16, [1, 64, 7, 7]),
        helper.make_tensor_value_info("tokens", TensorProto.INT64, [None, 16]),
    ]
    outputs = [helper.make_tensor_value_info(f"out_{v.name}", v.type.tensor_type.elem_type, None) for v in inputs]
    nodes = [helper.make_node("Identity", [v.name], [f"out_{v.name}"]) for v in inputs]
    weight = onnx.numpy_helper.from_array(np.zeros(2, np.float32), "weight")
    graph = helper.make_graph(nodes, "io", [*inputs, helper.make_tensor_value_info("weight", TensorProto.FLOAT, [2])],
                              outputs, [weight])
    described_in, described_out = describe_io(helper.make_model(graph))
    assert [(t.name, t.dtype, t.shape, t.layout) for t in described_in] == [
        ("nchw", "float32", ["batch", 3, 224, 224], "NCHW"),
        ("nhwc", "uint8", [1, 224, 224, 3], "NHWC"),
        ("features", "float16", [1, 64, 7, 7], None),
        ("tokens", "int64", ["?", 16], None),
    ]
    assert [t.dtype for t in described_out] == ["float32", "uint8", "float16", "int64"]


# --- real exports from torch.onnx -------------------------------------------------------------


@pytest.fixture(scope="session")
def torch_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny module exported by the TorchScript and the dynamo exporter, batch/height/width dynamic."""
    torch = pytest.importorskip("torch")
    nn, functional = torch.nn, torch.nn.functional

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):  # noqa: ANN001, ANN201
            y = self.down(functional.relu(self.bn(self.conv(x))))
            pooled = y.mean(dim=(2, 3))
            return self.fc(pooled.view(pooled.size(0), -1)), functional.interpolate(y, scale_factor=2.0)

    torch.manual_seed(0)
    module, example = Tiny().eval(), torch.randn(2, 3, 16, 16)
    folder = tmp_path_factory.mktemp("torch")
    names = {"input_names": ["images"], "output_names": ["logits", "up"]}
    paths = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths["torchscript"] = folder / "torchscript.onnx"
        try:
            torch.onnx.export(module, (example,), str(paths["torchscript"]), dynamo=False, opset_version=17,
                              dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}}, **names)
        except Exception as exc:  # the TorchScript exporter is deprecated and may be gone
            paths.pop("torchscript")
            paths["torchscript_skip"] = Path(f"TorchScript exporter unavailable: {exc}")
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)

            dims = {"x": {0: torch.export.Dim("batch", max=64), 2: torch.export.Dim("height", min=8, max=512),
                          3: torch.export.Dim("width", min=8, max=512)}}
            paths["dynamo"] = folder / "dynamo.onnx"
            torch.onnx.export(module, (example,), str(paths["dynamo"]), dynamo=True, dynamic_shapes=dims,
                              verbose=False, **names)
        except Exception as exc:
            paths.pop("dynamo", None)
            paths["dynamo_skip"] = Path(f"dynamo exporter unavailable: {exc}")
    return paths


def exported(torch_exports: dict[str, Path], kind: str) -> onnx.ModelProto:
    if kind not in torch_exports:
        pytest.skip(str(torch_exports[f"{kind}_skip"]))
    return load_onnx(torch_exports[kind])


@pytest.mark.parametrize("kind", ["torchscript", "dynamo"])
def test_torch_export_stays_dynamic(torch_exports: dict[str, Path], kind: str) -> None:
    original = exported(torch_exports, kind)
    cleaned = clean_model(original)
    assert io_names(cleaned) == (["images"], ["logits", "up"])
    assert describe_io(cleaned)[0][0].shape == ["batch", 3, "height", "width"]
    assert_same_outputs(original, cleaned, batch=2, height=16, width=16)
    assert_same_outputs(original, cleaned, batch=3, height=24, width=20)


@pytest.mark.parametrize("kind", ["torchscript", "dynamo"])
def test_torch_export_with_fixed_shape_folds(torch_exports: dict[str, Path], kind: str) -> None:
    original = exported(torch_exports, kind)
    cleaned = clean_model(original, {"images": [1, 3, 32, 32]})
    ops = [n.op_type for n in cleaned.graph.node]
    assert "Shape" not in ops and "BatchNormalization" not in ops
    assert len(cleaned.graph.node) < len(original.graph.node)
    assert all_dims_static(cleaned)
    assert [t.shape for t in describe_io(cleaned)[1]] == [[1, 4], [1, 8, 32, 32]]
    feed = random_feed(cleaned)
    for want, got in zip(run(original, feed), run(cleaned, feed), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
