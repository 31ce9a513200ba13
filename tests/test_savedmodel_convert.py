"""TensorFlow SavedModel in, bundle out (through tf2onnx): skipped where TensorFlow or tf2onnx is not installed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import edgedl  # noqa: E402
from edgedl.errors import UnsafeFileError  # noqa: E402
from edgedl.loading.ort_session import cpu_session  # noqa: E402


class Classifier(tf.Module):
    """Conv2D + bias + ReLU, global average pooling, a dense layer: an NHWC image in, logits out."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.kernel = tf.Variable(rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
        self.bias = tf.Variable(rng.normal(0, 0.1, (8,)).astype(np.float32))
        self.dense = tf.Variable(rng.normal(0, 0.5, (8, 4)).astype(np.float32))

    def forward(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.nn.relu(tf.nn.conv2d(image, self.kernel, strides=1, padding="SAME") + self.bias)
        return {"logits": tf.reduce_mean(x, axis=[1, 2]) @ self.dense}

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="image")])
    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.forward(image)


class ReadsAFile(tf.Module):
    """Computes, but its serving function also reads a file."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = tf.Variable(np.ones((3, 2), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 3], tf.float32, name="x")])
    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        size = tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32)
        return {"y": x @ self.weights + size * 0.0}


def save(module: tf.Module, folder: Path) -> Path:
    tf.saved_model.save(module, str(folder), signatures=module.__call__)
    return folder


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Classifier, Path]:
    module = Classifier()
    return module, save(module, tmp_path_factory.mktemp("tf") / "classifier")


def test_saved_model_matches_tensorflow(tmp_path: Path, classifier: tuple[Classifier, Path]) -> None:
    module, folder = classifier
    bundle = edgedl.convert(folder, tmp_path / "clf.edgedl")
    m = bundle.manifest
    assert m.source["format"] == "tf-savedmodel" and m.source["exporter"] == "tf2onnx"
    assert "tensorflow" in m.source["framework"] and "tf2onnx" in m.source["framework"]
    assert m.inputs[0].name == "image" and m.inputs[0].shape == [1, 16, 16, 3] and m.inputs[0].layout == "NHWC"
    assert [o.name for o in m.outputs] == ["logits"]
    check = m.validation["source"]
    assert check["passed"] and check["framework"] == "TensorFlow" and check["max_rel_error"] < 1e-5
    image = np.random.default_rng(1).random((1, 16, 16, 3), dtype=np.float32)
    (logits,) = cpu_session(bundle.file("fp32")).run(None, {"image": image})
    np.testing.assert_allclose(logits, module(tf.constant(image))["logits"].numpy(), rtol=1e-5, atol=1e-5)


def test_saved_model_int8_with_npy_calibration(tmp_path: Path, classifier: tuple[Classifier, Path]) -> None:
    _, folder = classifier
    np.save(tmp_path / "calib.npy", np.random.default_rng(2).random((24, 16, 16, 3), dtype=np.float32))
    bundle = edgedl.convert(folder, tmp_path / "clf8.edgedl", int8=True, calib_data=tmp_path / "calib.npy",
                            calib_samples=16, min_top1=0.5)
    m = bundle.manifest
    assert "int8" in m.variants and bundle.file("int8").is_file()
    check = m.validation["source"]
    assert check["passed"] and check["samples"]["calibration"] > 0 and check["max_rel_error"] < 1e-5


def test_saved_model_with_dynamic_batch_names_it_batch(tmp_path: Path) -> None:
    class Batched(Classifier):
        @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")])
        def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            return self.forward(image)

    module = Batched()
    bundle = edgedl.convert(save(module, tmp_path / "batched"), tmp_path / "batched.edgedl")
    assert bundle.manifest.inputs[0].shape == ["batch", 16, 16, 3]
    image = np.random.default_rng(3).random((3, 16, 16, 3), dtype=np.float32)
    (logits,) = cpu_session(bundle.file("fp32")).run(None, {"image": image})
    np.testing.assert_allclose(logits, module(tf.constant(image))["logits"].numpy(), rtol=1e-5, atol=1e-5)


def test_saved_model_reading_a_file_is_refused(tmp_path: Path) -> None:
    folder = save(ReadsAFile(), tmp_path / "reads")
    with pytest.raises(UnsafeFileError, match="ReadFile"):
        edgedl.convert(folder, tmp_path / "reads.edgedl")
    assert not (tmp_path / "reads.edgedl").exists()
