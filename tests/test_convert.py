"""`edgedl.convert` end to end on small models: variants, gate, repair, records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny import tiny_classifier

import edgedl
from edgedl.converters.validate import MAP_MIN_IOU
from edgedl.errors import AccuracyGateError
from edgedl.loading.calib_cache import read_cache
from edgedl.loading.ort_session import cpu_session, session_options


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    data = np.random.default_rng(0).uniform(0, 1, (60, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    return tmp_path / "calib.npy"


def test_int8_all_targets_writes_every_variant_and_record(tmp_path: Path, arrays: Path) -> None:
    bundle = edgedl.convert(tiny_classifier(tmp_path / "m.onnx"), int8=True, fp16=True, target="all",
                            calib_data=arrays, calib_samples=32, min_top1=0.8)
    m = bundle.manifest
    assert set(m.variants) == {"fp32", "int8", "int8-trt", "fp16"} and m.precisions == ["fp32", "fp16", "int8"]
    assert m.calibration["calibration_samples"] == 32 and m.calibration["holdout_samples"] == 15
    candidates = m.validation["candidates"]
    assert {c["scheme"] for c in candidates} >= {"qdq-u8s8-all", "qdq-u8s8-conv-matmul", "qoperator-u8s8-all"}
    chosen = m.variants["int8"].details["scheme"]
    passing = [c for c in candidates if c["passed"]]
    assert chosen == min(passing, key=lambda c: c["latency_ms"])["scheme"], "the fastest passing scheme wins"
    for key in ("int8", "int8-trt", "fp16"):
        entry = m.validation["variants"][key]
        assert entry["outputs"]["logits"]["cosine"] >= 0.99 and entry["latency_ms"] > 0
    # TensorRT variant: symmetric int8 (zero points 0) with Q/DQ, plus a cache naming the input tensor.
    trt = onnx.load(str(bundle.file("int8-trt")))
    zero_points = [i for i in trt.graph.initializer if "zero_point" in i.name]
    int8_points = [onnx.numpy_helper.to_array(z) for z in zero_points]
    int8_points = [z for z in int8_points if z.dtype != np.int32]  # biases are int32 by design
    assert int8_points and all(z.dtype == np.int8 and not z.any() for z in int8_points)
    assert m.validation["variants"]["int8-trt"]["excluded_nodes"] == []  # this model needs no layer kept in float
    header, scales = read_cache(bundle.path / "calibration.cache")
    assert header.startswith("TRT-") and scales["images"] == pytest.approx(1.0 / 127, rel=0.05)
    # FP16 keeps float32 at the edges.
    fp16 = onnx.load(str(bundle.file("fp16")))
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in fp16.graph.initializer)
    onnx.checker.check_model(fp16)  # nodes in topological order, as TensorRT's parser expects


def test_same_seed_same_split(tmp_path: Path, arrays: Path) -> None:
    model = tiny_classifier(tmp_path / "m.onnx")
    a = edgedl.convert(model, tmp_path / "a.edgedl", int8=True, calib_data=arrays, seed=5, target="tensorrt").manifest
    b = edgedl.convert(model, tmp_path / "b.edgedl", int8=True, calib_data=arrays, seed=5, target="tensorrt").manifest
    c = edgedl.convert(model, tmp_path / "c.edgedl", int8=True, calib_data=arrays, seed=6, target="tensorrt").manifest
    assert a.calibration == b.calibration != c.calibration
    # Same samples, same scales: the TensorRT variant (no timing-dependent choice) is byte-identical.
    assert a.variants["int8-trt"].sha256 == b.variants["int8-trt"].sha256 != c.variants["int8-trt"].sha256


def test_a_tensorrt_variant_is_checked_with_its_qdq_as_written(tmp_path: Path, arrays: Path) -> None:
    """TensorRT sums int8 products exactly; the check runs the Q/DQ nodes themselves, not ORT's fused int8 kernels."""
    import onnxruntime as ort

    bundle = edgedl.convert(tiny_classifier(tmp_path / "m.onnx"), int8=True, calib_data=arrays, target="tensorrt")
    optimized = tmp_path / "as-run.onnx"
    options = session_options(fuse_qdq=False)
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(bundle.file("int8-trt")), options, providers=["CPUExecutionProvider"])
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {n.op_type for n in onnx.load(str(optimized)).graph.node}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    node_by_node = ort.InferenceSession(str(bundle.file("int8-trt")), options, providers=["CPUExecutionProvider"])
    x = np.load(arrays)[:8]
    checked = cpu_session(bundle.file("int8-trt"), fuse_qdq=False).run(None, {"images": x})[0]
    # The float part is FP16, whose casts ONNX Runtime places differently by level (within FP16's rounding);
    # the fused int8 kernels this guards against put 0.4 of error on a 1.6-wide output.
    np.testing.assert_allclose(checked, node_by_node.run(None, {"images": x})[0], rtol=0, atol=0.05)


def test_gate_failure_writes_nothing(tmp_path: Path, arrays: Path) -> None:
    model = tiny_classifier(tmp_path / "m.onnx")
    with pytest.raises(AccuracyGateError, match="accuracy gate"):
        edgedl.convert(model, int8=True, calib_data=arrays, min_cosine=1.0000001)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy", "m.onnx"]


def test_fp32_bundle_runs_like_the_source(tmp_path: Path) -> None:
    model = tiny_classifier(tmp_path / "m.onnx")
    bundle = edgedl.convert(model)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    ours = cpu_session(bundle.file("fp32")).run(None, {"images": x})[0]
    theirs = cpu_session(model).run(None, {"images": x})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert bundle.manifest.inputs[0].shape == ["batch", 3, 16, 16]


def test_int8_that_breaks_a_model_is_repaired_by_keeping_the_damaged_layers_in_float(tmp_path: Path) -> None:
    from tiny import fragile

    data = np.random.default_rng(0).uniform(0, 1, (48, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    model = fragile(tmp_path / "fragile.onnx")
    # Keeping one of its two convolutions in float is more than a quarter: allowed here, as a labelled mixed variant.
    # Recovery (tests/test_recover.py) would spare the repair here: this test is about the repair.
    bundle = edgedl.convert(model, int8=True, calib_data=tmp_path / "calib.npy", task="raw", target="all",
                            allow_mixed=True, recover="none")
    m = bundle.manifest
    candidates = m.validation["candidates"]
    # Every plain scheme fails the gate; the repaired one passes and keeps just the loud tensor's nodes.
    assert not any(c["passed"] for c in candidates if not c["excluded_nodes"])
    int8 = m.validation["variants"]["int8"]
    assert int8["outputs"]["features"]["cosine"] >= 0.99
    assert set(int8["excluded_nodes"]) <= {"conv1", "mix"} and int8["excluded_nodes"]
    assert m.validation["variants"]["int8-trt"]["outputs"]["features"]["cosine"] >= 0.99
    # And the repair is real: the shipped file reproduces that agreement on fresh inputs.
    x = np.random.default_rng(9).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    ref = cpu_session(bundle.file("fp32")).run(None, {"images": x})[0].ravel()
    got = cpu_session(bundle.file("int8")).run(None, {"images": x})[0].ravel()
    assert float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got))) > 0.99


def test_yolo_style_detector_keeps_its_scores_in_int8(model_dir: Path, tmp_path: Path) -> None:
    import cv2
    import models

    onnx_path = models.build_detector(model_dir)
    calib = tmp_path / "frames"
    calib.mkdir()
    for i, frame in enumerate(models.sample_frames("detector", 48, seed=1)):
        cv2.imwrite(str(calib / f"{i:03d}.png"), frame)
    bundle = edgedl.convert(onnx_path, tmp_path / "det.edgedl", int8=True, calib_data=calib, calib_samples=32,
                            preprocess={"preset": "yolo"}, task="detect")
    int8 = bundle.manifest.validation["variants"]["int8"]
    out = int8["outputs"]["output0"]
    # Box pixels and 0-1 scores share one tensor: each feature row must keep its shape, not just the whole,
    # and the detections the runtime reports must be FP32's.
    assert out["cosine"] >= 0.99 and out["feature_cosine"] >= 0.95
    assert out["detections"] >= 20 and min(out["detection_recall"], out["detection_precision"]) >= 0.95
    # And it is INT8 in fact: the repair, if any, kept a handful of nodes in float, not the network.
    assert len(int8["excluded_nodes"]) <= 4, int8["excluded_nodes"]
    assert bundle.manifest.preprocess.resize == "letterbox" and bundle.manifest.task == "detect"


def test_shipped_classifier_converts_to_int8_on_the_shipped_photos(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgedl.cli.main import main

    demo = Path(edgedl.__file__).parent / "data" / "demo"
    result = CliRunner().invoke(main, ["convert", str(demo / "shapes_classifier.onnx"), "--int8", "--preset", "raw01",
                                       "--labels", str(demo / "labels.txt"), "-o", str(tmp_path / "demo.edgedl")])
    assert result.exit_code == 0, result.stderr
    assert "calibrate better" in result.stderr  # no --calib-data: the shipped photographs, with a warning
    m = edgedl.Bundle.open(tmp_path / "demo.edgedl").manifest
    assert m.calibration["kind"] == "shipped-photos" and m.labels == ["circle", "square", "triangle", "cross"]
    assert m.validation["variants"]["int8"]["outputs"]["logits"]["top1_agreement"] >= 0.9


@pytest.mark.slow
def test_the_shipped_demo_detector_is_int8_in_fact(tmp_path: Path) -> None:
    """The demo bundle's INT8 variant passes the gate with at most a few nodes kept in float (about 25 s).

    Whether a plain scheme passes on its own, or the repair has to keep a node or two in float, depends on
    the CPU's int8 kernels, so that is not asserted; the contract is an INT8 variant that is INT8 and accurate.
    """
    from edgedl.demo import demo_bundle

    manifest = edgedl.Bundle.open(demo_bundle(tmp_path, progress=False)).manifest
    int8 = manifest.validation["variants"]["int8"]
    assert int8["passed"], int8
    assert len(int8["excluded_nodes"]) <= 4, int8["excluded_nodes"]  # a few nodes kept in float, not the network
    out = int8["outputs"]["output0"]
    assert out["detections"] >= 20 and min(out["detection_recall"], out["detection_precision"]) >= 0.95
    assert out["feature_cosine"] >= 0.95


def _text_detector(path: Path) -> Path:
    """A text-detector-shaped model: ``prob`` [1, 1, 32, 32] is near 1 on white pixels (text) and near 0 elsewhere."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.full((1, 3, 1, 1), 40.0, np.float32), "w"),
             numpy_helper.from_array(np.array([-40.0 * 2.7], np.float32), "b")]
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["logit"], name="conv"),
             helper.make_node("Sigmoid", ["logit"], ["prob"], name="sigmoid")]
    graph = helper.make_graph(nodes, "text", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_held_out_frames_without_text_ask_for_more_data_rather_than_judging_noise(tmp_path: Path) -> None:
    import cv2
    from click.testing import CliRunner

    from edgedl.cli.main import main

    model = _text_detector(tmp_path / "text.onnx")
    rng = np.random.default_rng(0)
    (tmp_path / "dark").mkdir()
    (tmp_path / "pages").mkdir()
    for i in range(8):
        frame = rng.integers(0, 120, (48, 48, 3), dtype=np.uint8)  # no text anywhere: the map is ~0 everywhere
        cv2.imwrite(str(tmp_path / "dark" / f"{i}.png"), frame)
        cv2.putText(frame, "ab", (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 3)
        cv2.imwrite(str(tmp_path / "pages" / f"{i}.png"), frame)
    args = ["convert", str(model), "--int8", "--preset", "raw01", "--task", "raw"]
    result = CliRunner().invoke(main, [*args, "--calib-data", str(tmp_path / "dark"), "-o", str(tmp_path / "d.edgedl")])
    assert result.exit_code == 6, result.output  # a calibration error: the data, not the variant, falls short
    message = result.stderr.strip()
    assert "\n" not in message and "FP32's map exceeds 0.3 at 0 pixel(s)" in message
    assert "more, representative --calib-data" in message and not (tmp_path / "d.edgedl").exists()
    bundle = edgedl.convert(model, tmp_path / "p.edgedl", int8=True, calib_data=tmp_path / "pages",
                            preprocess={"preset": "raw01"}, task="raw")
    calibration = bundle.manifest.calibration  # 2 of 8 frames held out, grown by 3 views each
    assert calibration["holdout_samples"] == 8 and calibration["holdout_views"] == {"mirror": 2, "crop": 2, "shrink": 2}
    prob = bundle.manifest.validation["variants"]["int8"]["outputs"]["prob"]
    assert prob["map_pixels"] >= 64 and prob["map_iou"] >= MAP_MIN_IOU and prob["map_error"] <= 0.05
