"""Keras in, bundle out: .keras and .h5 files, NHWC layouts, safe loading, and the refusals."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgedl
from edgedl.cli.main import main
from edgedl.errors import InputFileError, MissingDependencyError, UnsafeFileError, UsageError
from edgedl.loading.ort_session import cpu_session

os.environ.setdefault("KERAS_BACKEND", "torch")  # edgedl sets this itself; the tests build models before it runs
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - only when the environment chose another backend
    pytest.skip("keras runs on another backend in this process", allow_module_level=True)
layers = keras.layers


def edge_model() -> keras.Model:
    """Two inputs (an NHWC image and a vector), two outputs; BN, depthwise, residual add, upsampling, concat."""
    image = keras.Input((16, 16, 3), name="image")
    meta = keras.Input((4,), name="meta")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(image)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Add()([x, layers.DepthwiseConv2D(3, padding="same")(x)])
    y = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    heat = layers.Conv2D(2, 1, name="heat")(layers.Concatenate()([x, layers.UpSampling2D(2)(y)]))
    pooled = layers.Concatenate()([layers.GlobalAveragePooling2D()(y), meta])
    return keras.Model([image, meta], [heat, layers.Dense(3, name="logits")(pooled)], name="edge")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keras")
    model = edge_model()
    rng = np.random.default_rng(0)
    model.compile("adam", ["mse", "mse"])
    model.fit([rng.random((8, 16, 16, 3)), rng.random((8, 4))], [rng.random((8, 8, 8, 2)), rng.random((8, 3))],
              epochs=1, verbose=0)  # moves batch-norm statistics off their defaults
    model.save(folder / "edge.keras")
    model.save(folder / "edge.h5")
    return {"keras": folder / "edge.keras", "h5": folder / "edge.h5"}


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def keras_outputs(path: Path, image: np.ndarray, meta: np.ndarray) -> list[np.ndarray]:
    model = keras.saving.load_model(path, compile=False)
    return [keras.ops.convert_to_numpy(o) for o in model([image, meta], training=False)]


def test_keras_file_keeps_nhwc_and_matches(tmp_path: Path, saved: dict[str, Path]) -> None:
    code, out, err = invoke(["convert", str(saved["keras"]), "-o", str(tmp_path / "edge.edgedl")])
    assert code == 0, err
    assert "ONNX matches the Keras model" in out
    data = json.loads((tmp_path / "edge.edgedl" / "edgedl.json").read_text())
    assert data["inputs"][0] == {"name": "image", "dtype": "float32", "shape": [1, 16, 16, 3], "layout": "NHWC"}
    assert data["preprocess"]["layout"] == "NHWC" and data["preprocess"]["input"] == "image"
    assert [o["name"] for o in data["outputs"]] == ["heat", "logits"]
    assert data["source"]["format"] == "keras" and data["source"]["layout"] == {"image": "NHWC"}
    assert data["validation"]["source"]["passed"] and data["validation"]["source"]["max_rel_error"] < 1e-5


def test_layout_nchw_puts_the_transpose_in_the_graph(tmp_path: Path, saved: dict[str, Path]) -> None:
    bundle = edgedl.convert(saved["keras"], tmp_path / "nchw.edgedl", layout="nchw")
    m = bundle.manifest
    assert m.inputs[0].shape == [1, 3, 16, 16] and m.inputs[0].layout == "NCHW" and m.preprocess.layout == "NCHW"
    rng = np.random.default_rng(1)
    image, meta = rng.random((1, 16, 16, 3), dtype=np.float32), rng.random((1, 4), dtype=np.float32)
    heat, logits = cpu_session(bundle.file("fp32")).run(None, {"image": image.transpose(0, 3, 1, 2).copy(), "meta": meta})
    expected = keras_outputs(saved["keras"], image, meta)
    np.testing.assert_allclose(heat, expected[0], atol=1e-5)
    np.testing.assert_allclose(logits, expected[1], atol=1e-5)


def test_legacy_h5_with_dynamic_batch(tmp_path: Path, saved: dict[str, Path]) -> None:
    bundle = edgedl.convert(saved["h5"], tmp_path / "h5.edgedl", dynamic_batch=True)
    assert bundle.manifest.source["format"] == "keras-h5"
    assert bundle.manifest.inputs[0].shape == ["batch", 16, 16, 3]
    rng = np.random.default_rng(2)
    image, meta = rng.random((3, 16, 16, 3), dtype=np.float32), rng.random((3, 4), dtype=np.float32)
    heat, _ = cpu_session(bundle.file("fp32")).run(None, {"image": image, "meta": meta})
    np.testing.assert_allclose(heat, keras_outputs(saved["h5"], image, meta)[0], atol=1e-5)


def test_in_memory_model_with_int8(tmp_path: Path) -> None:
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = layers.Dense(4)(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, name="tiny")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((24, 16, 16, 3), dtype=np.float32))
    bundle = edgedl.convert(model, tmp_path / "tiny.edgedl", int8=True, calib_data=tmp_path / "calib.npy",
                            calib_samples=16, min_top1=0.5)
    m = bundle.manifest
    assert m.name == "tiny" and m.source["format"] == "keras-model" and "int8" in m.variants
    assert m.validation["source"]["samples"] == {"random": 4, "calibration": 4}


def _lambda_model(path: Path) -> Path:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layers.Lambda(lambda t: t * 2, name="doubler")(inputs))
    model.save(path)
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_refused_and_never_loaded(tmp_path: Path, suffix: str) -> None:
    path = _lambda_model(tmp_path / f"lam{suffix}")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = invoke(["convert", str(path)])
    lines = err.strip().splitlines()
    assert code == UnsafeFileError.exit_code and len(lines) == 1, err
    assert "'doubler'" in lines[0] and "Lambda" in lines[0] and "safe_mode=True" in lines[0] and "fix:" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(("name", "content", "words"), [
    ("zip.keras", b"not a zip at all", "not a .keras archive"),
    ("hdf.h5", b"\x89PNG\r\n\x1a\n rest of a png", "not an HDF5 file"),
])
def test_keras_files_that_are_not_what_they_say(tmp_path: Path, name: str, content: bytes, words: str) -> None:
    (tmp_path / name).write_bytes(content)
    code, _, err = invoke(["convert", str(tmp_path / name)])
    assert code == InputFileError.exit_code and words in err and name in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_saved_model_without_tensorflow_says_what_to_install(tmp_path: Path) -> None:
    if "tensorflow" in sys.modules or _importable("tensorflow"):
        pytest.skip("TensorFlow is installed here")
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    with pytest.raises(MissingDependencyError, match="tensorflow.*model.keras"):
        edgedl.convert(folder)


def test_missing_keras_names_the_extra(saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)  # what `import keras` meets where it is not installed
    with pytest.raises(MissingDependencyError, match=r"edgedl\[keras\]"):
        edgedl.convert(saved["keras"])


def test_keras_on_another_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(UsageError, match="KERAS_BACKEND=torch"):
        edgedl.convert(edge_model())


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
