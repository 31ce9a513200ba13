"""``convert --dynamic-batch`` on an ONNX file: the batch dim is freed only where each row is still computed alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnx_factory import conv_net, save

import edgedl
from edgedl.cli.main import main
from edgedl.loading.ort_session import cpu_session


def test_a_fixed_batch_becomes_dynamic_and_runs_batches_row_for_row(tmp_path: Path) -> None:
    model = save(conv_net(batch=1), tmp_path / "fixed.onnx")
    bundle = edgedl.convert(model, tmp_path / "fixed.edgedl", dynamic_batch=True, preprocess={"preset": "imagenet"})
    assert bundle.manifest.inputs[0].shape[0] == "batch" and bundle.manifest.outputs[0].shape[0] == "batch"
    session = cpu_session(bundle.path / "model.onnx")
    x = np.random.default_rng(1).uniform(0, 1, (3, 3, 16, 16)).astype(np.float32)
    rows = np.concatenate([session.run(None, {"images": x[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(session.run(None, {"images": x})[0], rows, rtol=1e-5, atol=1e-6)


def _flatten_to_one(path: Path) -> Path:
    """Conv, then Reshape to the constant [1, -1]: a graph that ties its batch to 1 inside."""
    weight = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["images", "w"], ["c"]), helper.make_node("Reshape", ["c", "shape"], ["flat"])]
    graph = helper.make_graph(nodes, "flat1", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, 128])], [weight, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_graph_that_fixes_its_batch_inside_is_refused_in_one_line(tmp_path: Path) -> None:
    model = _flatten_to_one(tmp_path / "flat.onnx")
    result = CliRunner().invoke(main, ["convert", str(model), "--dynamic-batch", "--preset", "imagenet"])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "fixes its batch inside" in result.stderr and "flat.onnx" in result.stderr
    assert not (tmp_path / "flat.edgedl").exists()
    with pytest.raises(edgedl.EdgeDLError, match="apply to PyTorch and Keras"):
        edgedl.convert(model, tmp_path / "x.edgedl", dynamic_hw=True)
