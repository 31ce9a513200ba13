"""The TensorRT backend against the fake ``tensorrt`` of tests/fake_tensorrt.py (no GPU or TensorRT here).

What these tests prove: the code path each TensorRT release needs (flags, variants, the
binding or tensor-name API), the engine cache's keys and checks, rebuilds on every kind
of mismatch, and the CUDA data path's shape and address handling. What they cannot prove:
that real TensorRT builds or runs these engines; README says so.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_tensorrt import VERSIONS, FakeGpu, install

import edgedl
from edgedl.errors import BundleError, DeviceError, InputFileError, UsageError
from edgedl.loading.ort_session import cpu_session
from edgedl.runtimes.tensorrt import build as trt_build

X = np.random.default_rng(5).uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)


def fp32(bundle: Path, x: np.ndarray = X) -> np.ndarray:
    return cpu_session(bundle / "model.onnx").run(None, {"images": x})[0]


def load(bundle: Path, **kwargs: object) -> edgedl.Model:
    return edgedl.load(bundle, backend="tensorrt", progress=False, **kwargs)


@pytest.mark.parametrize("version", VERSIONS)
def test_each_release_builds_and_runs_on_its_own_api(bundle: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    trt, driver = install(version, monkeypatch=monkeypatch)
    with load(bundle, precision="fp32") as model:
        details = model.describe()
        assert details["io_api"].startswith("bindings" if version.startswith("8.4") else "tensor names")
        np.testing.assert_allclose(model(X)["logits"], fp32(bundle), rtol=1e-5, atol=1e-6)
        # A different batch within the profile re-shapes without reallocating.
        allocations = driver.allocations
        np.testing.assert_allclose(model(X[:1])["logits"], fp32(bundle, X[:1]), rtol=1e-5, atol=1e-6)
        assert driver.allocations == allocations
        assert model.last_device_ms is not None and model.last_device_ms >= 0
    assert driver.live() == 0, "closing the model frees every buffer"
    with load(bundle, precision="int8") as model:
        # The Q/DQ variant's float part is FP16 (an opset-19 graph): 8.x's parser predates it, so 8.x
        # quantizes the FP32 graph implicitly from the calibration cache; 10.x and 11 take the variant.
        implicit = version.startswith("8.")
        assert (model.variant, model.precision) == ("fp32" if implicit else "int8-trt", "int8")
        assert model(X)["logits"].shape == (2, 4)
    assert trt._builds == ["fp32", "int8-calibrated" if implicit else "int8"]


@pytest.mark.parametrize("version", ["8.4.1", "10.3.0"])
def test_per_layer_times_come_from_an_iprofiler_on_the_context(bundle: Path, version: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """8.4 reports layer times only for synchronous execution, so the backend switches to it while profiling."""
    install(version, monkeypatch=monkeypatch)
    with load(bundle, precision="fp32") as model:
        assert model.capabilities.layer_profiler == "tensorrt-iprofiler" and model.capabilities.device_io
        layers = model.profile_layers(X, runs=3)
        nodes = {n.name for n in onnx.load(str(bundle / "model.onnx")).graph.node}
        assert layers.runs == 3 and {layer.name for layer in layers.layers} == nodes
        assert sum(layer.share for layer in layers.layers) == pytest.approx(1)
        np.testing.assert_allclose(model(X)["logits"], fp32(bundle), rtol=1e-5, atol=1e-6)  # detached, still right


def test_profile_per_layer_runs_on_tensorrt(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from edgedl.cli.profile_command import profile

    install("10.3.0", monkeypatch=monkeypatch)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(profile, [str(bundle), "--backend", "tensorrt", "--precision", "fp32", "--warmup", "1",
                                          "--runs", "5", "--per-layer", "--json", str(report)])
    assert result.exit_code == 0, result.output
    layers = json.loads(report.read_text())["runs"][0]["layers"]
    assert layers["profiler"] == "tensorrt-iprofiler" and layers["layers"]


@pytest.mark.parametrize(("version", "variant", "flags"), [
    ("8.6.2", "fp32", ["FP16"]),     # weakly typed: FP32 graph, FP16 flag
    ("10.3.0", "fp32", ["FP16"]),
    ("11.0.0", "fp16", []),          # strongly typed: the FP16 graph, no flags (there are none)
])
def test_fp16_uses_flags_or_the_fp16_variant_as_the_release_requires(bundle: Path, version: str, variant: str,
                                                                      flags: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    install(version, monkeypatch=monkeypatch)
    with load(bundle, precision="fp16") as model:
        assert (model.variant, model.precision) == (variant, "fp16")
        record = json.loads(next((bundle / "engines").glob("*.json")).read_text())
        assert record["key"]["flags"] == flags and record["build_seconds"] >= 0
        out = model(X)["logits"]
    np.testing.assert_allclose(out, fp32(bundle), rtol=1e-2, atol=1e-2)


def drop_qdq_variant(bundle: Path) -> None:
    manifest = json.loads((bundle / "edgedl.json").read_text())
    del manifest["variants"]["int8-trt"]
    (bundle / "edgedl.json").write_text(json.dumps(manifest))
    (bundle / "model.int8.trt.onnx").unlink()


def test_implicit_int8_from_the_calibration_cache_with_the_header_rewritten(bundle: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    drop_qdq_variant(bundle)
    assert (bundle / "calibration.cache").read_bytes().startswith(b"TRT-8601-")
    trt, _ = install("10.3.0", monkeypatch=monkeypatch)
    with load(bundle) as model:  # auto: INT8 from FP32 + cache, since the cache is all there is
        assert (model.variant, model.precision) == ("fp32", "int8")
        np.testing.assert_allclose(model(X)["logits"], fp32(bundle), rtol=1e-2, atol=1e-2)
    # The fake refuses a cache whose header names another TensorRT, so this build proves the rewrite.
    assert trt._builds == ["int8-calibrated"]
    key = json.loads(next((bundle / "engines").glob("*.json")).read_text())["key"]
    assert key["int8"] == "calibration-cache" and len(key["calibration_cache_sha256"]) == 64


def test_tensorrt_11_without_a_qdq_variant_says_how_to_get_int8(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drop_qdq_variant(bundle)
    install("11.0.0", monkeypatch=monkeypatch)
    with pytest.raises(UsageError, match="TensorRT 11.0.0 has no implicit INT8.*--int8 --target tensorrt"):
        load(bundle, precision="int8")
    with load(bundle) as model:  # auto falls back to FP16 from the FP16 variant
        assert (model.variant, model.precision) == ("fp16", "fp16")


def test_cache_hit_then_rebuilds_on_every_kind_of_mismatch(bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    trt, _ = install("10.3.0", monkeypatch=monkeypatch)
    with load(bundle, precision="fp32") as model:
        assert model.describe()["built_now"]
        plan_path = Path(model.describe()["plan"])
    record_path = plan_path.with_suffix(".json")
    record = json.loads(record_path.read_text())
    key = record["key"]
    assert {"model_sha256", "precision", "shapes", "tensorrt", "cuda", "gpu", "compute_capability", "dla_core"} <= set(key)
    assert key["tensorrt"] == "10.3.0" and key["gpu"] == "Orin (fake)" and key["compute_capability"] == "8.7"
    assert key["shapes"] == {"images": [[1, 3, 16, 16], [1, 3, 16, 16], [8, 3, 16, 16]]}
    with load(bundle, precision="fp32") as model:
        assert not model.describe()["built_now"]
    assert len(trt._builds) == 1

    plan = plan_path.read_bytes()
    plan_path.write_bytes(plan[: len(plan) // 2])  # truncated
    with load(bundle, precision="fp32") as model:
        assert model.describe()["built_now"]
    assert "does not match its recorded sha256" in caplog.text

    record = json.loads(record_path.read_text())
    record["key"]["gpu"] = "some other GPU"  # a record that does not match the key it is filed under
    record_path.write_text(json.dumps(record))
    with load(bundle, precision="fp32") as model:
        assert model.describe()["built_now"]
    assert "does not match the requested key" in caplog.text

    # A plan from another TensorRT whose record was made to match: TensorRT itself refuses it; rebuilt.
    other = trt_plan_from("8.6.2", bundle, monkeypatch)
    plan_path.write_bytes(other)
    record = json.loads(record_path.read_text())
    record["plan_sha256"] = __import__("hashlib").sha256(other).hexdigest()
    record_path.write_text(json.dumps(record))
    install("10.3.0", monkeypatch=monkeypatch)
    with load(bundle, precision="fp32") as model:
        assert model.describe()["built_now"]
        np.testing.assert_allclose(model(X)["logits"], fp32(bundle), rtol=1e-5, atol=1e-6)
    assert "TensorRT refused cached engine" in caplog.text
    assert "not compatible with this version of TensorRT" in caplog.text


def trt_plan_from(version: str, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    install(version, monkeypatch=monkeypatch)
    other = bundle.parent / "other.edgedl"
    shutil.copytree(bundle, other, ignore=shutil.ignore_patterns("engines"))
    with load(other, precision="fp32") as model:
        return Path(model.describe()["plan"]).read_bytes()


def test_another_release_or_gpu_gets_its_own_key(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    load(bundle, precision="fp32").close()
    install("10.3.0", gpu=FakeGpu("Xavier (fake)", (7, 2)), monkeypatch=monkeypatch)
    load(bundle, precision="fp32").close()
    install("8.6.2", monkeypatch=monkeypatch)
    load(bundle, precision="fp32").close()
    records = [json.loads(p.read_text()) for p in (bundle / "engines").glob("fp32-*.json")]
    assert sorted((r["key"]["tensorrt"], r["key"]["compute_capability"]) for r in records) == [
        ("10.3.0", "7.2"), ("10.3.0", "8.7"), ("8.6.2", "8.7")]
    assert len({r["key_id"] for r in records}) == 3
    timing = sorted(p.name for p in (bundle / "engines").glob("timing-*.cache"))
    assert timing == ["timing-10.3.0-sm72.cache", "timing-10.3.0-sm87.cache", "timing-8.6.2-sm87.cache"]


def test_build_false_refuses_on_a_miss(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    with pytest.raises(BundleError, match="no usable engine cached.*run edgedl build"):
        load(bundle, precision="fp32", build=False)
    load(bundle, precision="fp32").close()
    load(bundle, precision="fp32", build=False).close()


def test_shapes_profiles_and_errors(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    with load(bundle, precision="fp32", shapes={"images": ((1, 3, 16, 16), (2, 3, 16, 16), (2, 3, 16, 16))}) as model:
        model(X)
        with pytest.raises(UsageError, match=r"shape \(4, 3, 16, 16\) is outside the engine's range"):
            model(np.zeros((4, 3, 16, 16), np.float32))
        np.testing.assert_allclose(model(X)["logits"], fp32(bundle), rtol=1e-5, atol=1e-6)  # still usable
    with pytest.raises(UsageError, match="unknown input 'pixels'"):
        load(bundle, shapes={"pixels": (1, 3, 16, 16)})
    with pytest.raises(UsageError, match="fixed dim 1 = 3"):
        load(bundle, shapes={"images": (1, 4, 16, 16)})
    with pytest.raises(UsageError, match="not min <= opt <= max"):
        load(bundle, shapes={"images": ((4, 3, 16, 16), (1, 3, 16, 16), (8, 3, 16, 16))})


def test_batch_tunes_a_dynamic_batch_profile_and_keys_the_engine(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    for batch in (None, 4, 12):
        with load(bundle, precision="fp32", batch=batch) as model:
            np.testing.assert_allclose(model(X)["logits"], fp32(bundle), rtol=1e-5, atol=1e-6)
    profiles = sorted(json.loads(path.read_text())["key"]["shapes"]["images"]
                      for path in (bundle / "engines").glob("*.json"))
    assert [[shape[0] for shape in triple] for triple in profiles] == [[1, 1, 8], [1, 4, 8], [1, 12, 12]]
    with pytest.raises(UsageError, match="batch size must be a whole number of at least 1, got 0"):
        load(bundle, precision="fp32", batch=0)


def test_dla_needs_a_reduced_precision_and_keys_on_the_core(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("8.6.2", monkeypatch=monkeypatch)
    with pytest.raises(UsageError, match="DLA runs FP16 or INT8"):
        load(bundle, precision="fp32", dla_core=0)
    with load(bundle, precision="fp16", dla_core=1) as model:
        assert model.describe()["dla_core"] == 1
    record = json.loads(next((bundle / "engines").glob("*.json")).read_text())
    assert record["key"]["dla_core"] == 1 and "GPU_FALLBACK" in record["key"]["flags"]


def test_a_model_the_parser_rejects_is_a_clear_error(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnx

    from edgedl.fsutil import sha256_file

    model = onnx.load(str(bundle / "model.onnx"))
    model.graph.node[1].domain = "com.example"
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(model, str(bundle / "model.onnx"))
    manifest = json.loads((bundle / "edgedl.json").read_text())
    manifest["variants"]["fp32"]["sha256"] = sha256_file(bundle / "model.onnx")
    (bundle / "edgedl.json").write_text(json.dumps(manifest))
    install("10.3.0", monkeypatch=monkeypatch)
    with pytest.raises(InputFileError, match="TensorRT's ONNX parser rejected the model: No importer registered for op"):
        load(bundle, precision="fp32")
    assert not list((bundle / "engines").glob("*.plan"))


def test_progress_is_reported_while_building(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    monkeypatch.setenv("FAKE_TRT_BUILD_SECONDS", "0.3")
    monkeypatch.setattr(trt_build, "HEARTBEAT_SECONDS", 0.05)
    messages: list[str] = []
    edgedl.load(bundle, backend="tensorrt", precision="fp32", progress=messages.append).close()
    text = "\n".join(messages)
    assert "parsing model.onnx with TensorRT 10.3.0" in text
    assert "Building engine (3 steps)" in text  # from TensorRT's IProgressMonitor
    assert "still building" in text  # the heartbeat, for releases without a monitor
    assert "built in" in text


def test_device_arrays_in_and_out_and_a_worker_thread(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, driver = install("10.3.0", monkeypatch=monkeypatch)
    with load(bundle, precision="fp32") as model:
        outputs = model.infer(X, device_outputs=True)
        logits = outputs["logits"]
        assert logits.__cuda_array_interface__["shape"] == (2, 4)
        host = np.empty((2, 4), np.float32)
        driver.copy_dtoh(host, logits.ptr, None)
        np.testing.assert_allclose(host, fp32(bundle), rtol=1e-5, atol=1e-6)
        # A device array as input: its pointer is bound directly, no host copy.
        staging = driver.malloc(X.nbytes)
        driver.copy_htod(staging, np.ascontiguousarray(X), None)

        class OnDevice:
            __cuda_array_interface__ = {"shape": X.shape, "typestr": "<f4", "data": (staging, False), "version": 3}

        copies = driver.copies
        np.testing.assert_allclose(model(OnDevice())["logits"], fp32(bundle), rtol=1e-5, atol=1e-6)
        assert driver.copies == copies + 1  # only the output came back
        with pytest.raises(UsageError, match="is float64"):
            model(X.astype(np.float64))
        result: dict[str, np.ndarray] = {}
        worker = threading.Thread(target=lambda: result.update(model(X)))
        worker.start()
        worker.join()
        np.testing.assert_allclose(result["logits"], fp32(bundle), rtol=1e-5, atol=1e-6)
        assert len(driver.activated_threads) >= 2, "the device is made current in the calling thread"
        driver.free(staging)


def test_a_failing_execution_is_an_error_not_a_wrong_answer(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    with load(bundle, precision="fp32") as model:
        context = model._backend._context
        monkeypatch.setattr(context, "execute_async_v3", lambda stream: False, raising=False)
        with pytest.raises(DeviceError, match="TensorRT inference failed"):
            model(X)
