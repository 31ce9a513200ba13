"""The shipped demo model and calibration photographs, and the test models from tools/models.py."""

from __future__ import annotations

from pathlib import Path

import cv2
import models  # tools/models.py, on sys.path through conftest.py
import numpy as np
import onnxruntime as ort
import pytest

import edgedl

DATA = Path(edgedl.__file__).resolve().parent / "data"
DEMO = DATA / "demo"
CALIB = DATA / "calib"


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _preprocess(frames: list[np.ndarray]) -> np.ndarray:
    """Written out, not borrowed from models.py: stretch to 64x64, BGR->RGB, /255, NCHW."""
    batch = [cv2.cvtColor(cv2.resize(f, (64, 64)), cv2.COLOR_BGR2RGB) for f in frames]
    return np.stack(batch).astype(np.float32).transpose(0, 3, 1, 2) / 255.0


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_demo_model_is_small_and_labelled() -> None:
    assert (DEMO / "shapes_classifier.onnx").stat().st_size < 1 << 20
    assert (DEMO / "labels.txt").read_text().splitlines() == list(models.CLASSES)
    assert "python tools/make_demo.py" in (DEMO / "README.md").read_text()


def test_demo_model_classifies_fresh_shape_frames() -> None:
    session = _session(DEMO / "shapes_classifier.onnx")
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("images", ["batch", 3, 64, 64])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("logits", ["batch", 4])]
    frames, labels = models.labelled_frames("classifier", 96, seed=31337)
    logits = session.run(None, {"images": _preprocess(frames)})[0]
    accuracy = np.mean(logits.argmax(1) == np.array(labels))
    assert accuracy > 0.8, f"demo model accuracy {accuracy:.1%}"


def test_sample_frames_are_seeded_camera_frames() -> None:
    a, b = models.sample_frames("detector", 3, seed=4), models.sample_frames("detector", 5, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b[:3], strict=True))
    assert a[0].shape == (240, 320, 3) and a[0].dtype == np.uint8
    assert not np.array_equal(a[0], models.sample_frames("detector", 1, seed=5)[0])
    with pytest.raises(ValueError, match="unknown model kind"):
        models.sample_frames("segmenter", 1)


def _photos() -> list[Path]:
    return sorted(CALIB.glob("*.jpg"))


def test_calibration_photos_decode_as_small_colour_images() -> None:
    photos = _photos()
    assert 6 <= len(photos) <= 10
    assert sum(p.stat().st_size for p in photos) < 400 * 1024
    for photo in photos:
        image = cv2.imread(str(photo))
        assert image is not None, photo
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, photo
        assert max(image.shape[:2]) <= 320, photo


def test_licenses_name_every_photo() -> None:
    licences = (CALIB / "LICENSES.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in licences.splitlines()
            if line.startswith("| `")}
    assert sorted(rows) == [p.name for p in _photos()]
    for name, row in rows.items():
        assert "public domain" in row.lower() or "CC0" in row, f"{name}: no redistribution licence stated"


@pytest.mark.slow
def test_fragile_model_needs_its_culprits_in_float(model_dir: Path, tmp_path: Path) -> None:
    """Full per-tensor INT8 wrecks the fragile model; keeping FRAGILE_CULPRITS in float repairs it."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    fragile = models.build_fragile(model_dir)
    calibration = _preprocess(models.sample_frames("fragile", 64, seed=1))
    test = _preprocess(models.sample_frames("fragile", 64, seed=99))
    reference = _session(fragile).run(None, {"images": test})[0]
    classifier = _session(models.build_classifier(model_dir)).run(None, {"images": test})[0]
    np.testing.assert_allclose(reference, classifier, rtol=1e-3, atol=1e-3)  # same float function

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self.rows, None)
            return None if row is None else {"images": row}

    def int8_cosine(exclude: list[str]) -> float:
        out = tmp_path / f"int8-{len(exclude)}.onnx"
        quantize_static(str(fragile), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
        return _cosine(reference, _session(out).run(None, {"images": test})[0])

    assert int8_cosine([]) < 0.9
    assert int8_cosine(list(models.FRAGILE_CULPRITS)) > 0.99
