"""An INT8 variant runs most of its convolutions and matrix products in INT8, and says how many.

The share is recorded per variant (manifest, ``edgedl info``, convert's table); a best passing mix that
keeps more than a quarter of them in float is refused with the accuracy-gate code and nothing written,
unless ``--allow-mixed`` writes it labelled ``int8-mixed``. The TensorRT variant is INT8 Q/DQ on the
inputs of the layers TensorRT runs in INT8 and FP16 elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from tiny import tiny_classifier

import edgedl
from edgedl.cli.main import main
from edgedl.converters import int8_share
from edgedl.converters.int8_share import int8_share as count_share
from edgedl.converters.quantize import TENSORRT_SCHEME, Quantizer
from edgedl.errors import AccuracyGateError, UsageError


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    data = np.random.default_rng(0).uniform(0, 1, (40, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    return tmp_path / "calib.npy"


def samples(n: int = 16) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"images": rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def test_allow_mixed_without_int8_is_a_usage_error(tmp_path: Path) -> None:
    model = tiny_classifier(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="--allow-mixed"):
        edgedl.convert(model, tmp_path / "a.edgedl", fp16=True, allow_mixed=True)
    result = CliRunner().invoke(main, ["convert", str(model), "-o", str(tmp_path / "b.edgedl"), "--allow-mixed"])
    assert result.exit_code == UsageError.exit_code and "--allow-mixed" in result.output
    assert not (tmp_path / "a.edgedl").exists() and not (tmp_path / "b.edgedl").exists()


def test_the_share_counts_the_nodes_left_in_float(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "m.onnx")
    fp32 = onnx.load(str(path))
    quantizer = Quantizer(path, samples(), "minmax", tmp_path)
    whole = count_share(onnx.load(str(quantizer.quantize(TENSORRT_SCHEME, tmp_path / "all.onnx"))), fp32)
    assert (whole.compute, whole.int8, whole.float_nodes) == (2, 2, ())
    part = count_share(onnx.load(str(quantizer.quantize(TENSORRT_SCHEME, tmp_path / "part.onnx", ["fc"]))), fp32)
    assert (part.int8, part.float_nodes, part.share) == (1, ("fc",), 0.5)
    assert whole.mostly_int8 and not part.mostly_int8  # one of two in float is more than a quarter


def test_entropy_calibration_reaches_the_symmetric_scheme(tmp_path: Path) -> None:
    """ONNX Runtime's default entropy histogram had one threshold to choose: minmax's."""
    path = tiny_classifier(tmp_path / "m.onnx")
    ranges = {}
    for method in ("minmax", "entropy"):
        data = Quantizer(path, samples(), method, tmp_path).ranges(True).data
        ranges[method] = {name: max(abs(float(np.min(d.range_value[0]))), abs(float(np.max(d.range_value[1]))))
                          for name, d in data.items()}
    assert any(ranges["entropy"][name] < 0.99 * ranges["minmax"][name] for name in ranges["minmax"])


def test_every_int8_variant_records_its_share_and_the_trt_float_part(tmp_path: Path, arrays: Path) -> None:
    bundle = edgedl.convert(tiny_classifier(tmp_path / "m.onnx"), int8=True, target="all", calib_data=arrays,
                            calib_samples=24, min_top1=0.8)
    for key in ("int8", "int8-trt"):
        details = bundle.manifest.variants[key].details
        assert details["label"] == "int8"
        assert details["int8_share"] == {"compute_nodes": 2, "int8_nodes": 2, "share": 1.0, "float_nodes": []}
        assert bundle.manifest.validation["variants"][key]["int8_share"] == details["int8_share"]
    trt = onnx.load(str(bundle.file("int8-trt")))
    details = bundle.manifest.variants["int8-trt"].details
    assert details["float_precision"] == "fp16" and details["opset"] >= 19
    # INT8 Q/DQ on the inputs of the layers TensorRT runs in INT8, FP16 for the rest, float32 at the edges.
    producers = {out: node for node in trt.graph.node for out in node.output}
    quantized_outputs = [producers[n.input[0]].op_type for n in trt.graph.node
                         if n.op_type == "QuantizeLinear" and n.input[0] in producers]
    assert "Conv" not in quantized_outputs and "Gemm" not in quantized_outputs
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in trt.graph.initializer)
    assert trt.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    onnx.checker.check_model(trt)
    assert (bundle.path / "calibration.cache").is_file()  # for the releases that still calibrate implicitly
    info = CliRunner().invoke(main, ["info", str(bundle.path)], env={"COLUMNS": "300"})
    assert info.exit_code == 0 and "2/2 (100%)" in info.output and "float part fp16" in info.output


def test_a_mostly_float_mix_is_refused_and_writes_nothing(tmp_path: Path, arrays: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # No tiny model needs a quarter of its layers in float to pass; a stricter limit makes every mix "mostly float".
    monkeypatch.setattr(int8_share, "MAX_FLOAT_SHARE", -1.0)
    model = tiny_classifier(tmp_path / "m.onnx")
    out = tmp_path / "m.edgedl"
    with pytest.raises(AccuracyGateError) as error:
        edgedl.convert(model, out, int8=True, calib_data=arrays, calib_samples=24, min_top1=0.8)
    message = str(error.value)
    assert "INT8 is not viable" in message and "--allow-mixed" in message and "cosine" in message
    assert "× FP32" in message or "x FP32" in message
    assert not out.exists()
    result = CliRunner().invoke(main, ["convert", str(model), "-o", str(out), "--int8", "--calib-data", str(arrays),
                                       "--calib-samples", "24", "--min-top1", "0.8"])
    assert result.exit_code == AccuracyGateError.exit_code and not out.exists()

    bundle = edgedl.convert(model, out, int8=True, calib_data=arrays, calib_samples=24, min_top1=0.8,
                            allow_mixed=True)
    assert bundle.manifest.variants["int8"].details["label"] == "int8-mixed"
    assert bundle.manifest.variants["int8"].precision == "int8"  # runtimes load it as any INT8 variant
    info = CliRunner().invoke(main, ["info", str(out)], env={"COLUMNS": "300"})
    assert info.exit_code == 0 and "int8-mixed" in info.output
