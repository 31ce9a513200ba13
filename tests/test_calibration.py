"""Calibration data: formats, seeded disjoint splits, and every bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedl.converters.calibration import HOLDOUT_VIEWS, holdout_view, load_calibration
from edgedl.errors import CalibrationError
from edgedl.manifest import TensorInfo
from edgedl.preprocess import PreprocessSpec, preprocess

INPUT = TensorInfo("images", "float32", ["batch", 3, 16, 16], "NCHW")
SPEC = PreprocessSpec(width=16, height=16)


def write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        path = folder / f"frame{i:03d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_image_folder_uses_the_runtime_preprocessing_and_disjoint_seeded_split(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 40)
    data = load_calibration(tmp_path / "imgs", [INPUT], SPEC, "images", samples=100, holdout=8, seed=3)
    assert len(data.holdout) == 8 and len(data.calibration) == 32
    expected = {p.name: preprocess(SPEC, cv2.imread(str(p)))[0] for p in paths}
    held = set(data.summary["holdout_files"])
    for sample in data.calibration:  # each calibration sample is a non-held-out frame, preprocessed exactly
        matches = [name for name, arr in expected.items() if np.array_equal(arr, sample["images"])]
        assert len(matches) == 1 and matches[0] not in held
    again = load_calibration(tmp_path / "imgs", [INPUT], SPEC, "images", samples=100, holdout=8, seed=3)
    assert again.summary["holdout_files"] == data.summary["holdout_files"]
    other = load_calibration(tmp_path / "imgs", [INPUT], SPEC, "images", samples=100, holdout=8, seed=4)
    assert other.summary["holdout_files"] != data.summary["holdout_files"]


def test_few_held_out_frames_grow_by_views_of_themselves_never_of_calibration_frames(tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 12)  # a quarter held out: 3 frames, fewer than the 16 asked for
    data = load_calibration(tmp_path / "imgs", [INPUT], SPEC, "images", samples=100, holdout=16, seed=0)
    held = [p for p in paths if p.name in data.summary["holdout_files"]]
    assert len(held) == 3 and data.summary["holdout_views"] == {"mirror": 3, "crop": 3, "shrink": 3}
    assert data.summary["holdout_samples"] == len(data.holdout) == 12 and len(data.calibration) == 9
    views = {preprocess(SPEC, holdout_view(cv2.imread(str(p)), v))[0].tobytes() for p in held for v in HOLDOUT_VIEWS}
    frames = {preprocess(SPEC, cv2.imread(str(p)))[0].tobytes() for p in held}
    assert {s["images"].tobytes() for s in data.holdout} == frames | views  # each frame and its three views
    calibration = {s["images"].tobytes() for s in data.calibration}
    unheld = {preprocess(SPEC, cv2.imread(str(p)))[0].tobytes() for p in paths if p not in held}
    assert calibration == unheld and not calibration & (frames | views)
    few = load_calibration(tmp_path / "imgs", [INPUT], SPEC, "images", samples=100, holdout=4, seed=0)
    assert few.summary["holdout_views"] == {"mirror": 1} and len(few.holdout) == 4  # grown up to --holdout only
    enough = load_calibration(tmp_path / "imgs", [INPUT], SPEC, "images", samples=100, holdout=3, seed=0)
    assert enough.summary["holdout_views"] == {} and len(enough.holdout) == 3


def test_held_out_views_are_mirrors_centre_crops_and_half_resolution_copies() -> None:
    frame = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
    assert np.array_equal(holdout_view(frame, "mirror"), frame[:, ::-1])
    assert np.array_equal(holdout_view(frame, "crop"), frame[5:35, 7:52])  # the centre three quarters
    assert holdout_view(frame, "shrink").shape == (20, 30, 3)


def test_npy_and_npz_arrays(tmp_path: Path) -> None:
    arrays = np.random.default_rng(0).standard_normal((20, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "a.npy", arrays)
    np.savez(tmp_path / "a.npz", images=arrays)
    for name in ("a.npy", "a.npz"):
        data = load_calibration(tmp_path / name, [INPUT], None, None, samples=10, holdout=4, seed=0)
        assert len(data.calibration) == 10 and len(data.holdout) == 4
        assert data.calibration[0]["images"].shape == (1, 3, 16, 16)
        assert "holdout_views" not in data.summary  # arrays are not images: nothing to mirror or crop
        calib = {a.tobytes() for s in data.calibration for a in s.values()}
        assert not calib & {a.tobytes() for s in data.holdout for a in s.values()}


def test_shipped_photos_are_the_default_for_image_models(caplog: pytest.LogCaptureFixture) -> None:
    data = load_calibration(None, [INPUT], SPEC, "images", samples=20, holdout=4, seed=0)
    assert data.summary["kind"] == "shipped-photos" and len(data.calibration) >= 20
    assert "calibrate better" in caplog.text


def _error(tmp_path: Path, source: Path | None, **kwargs: object) -> str:
    args = {"inputs": [INPUT], "spec": SPEC, "image_input": "images", **kwargs}
    with pytest.raises(CalibrationError) as info:
        load_calibration(source, **args)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and "fix:" in message
    return message


def test_bad_calibration_inputs(tmp_path: Path) -> None:
    assert "no images" in _error(tmp_path, (tmp_path / "empty").mkdir() or tmp_path / "empty")
    assert "not found" in _error(tmp_path, tmp_path / "missing")
    bad = tmp_path / "bad"
    write_images(bad, 3)
    (bad / "frame001.png").write_bytes(b"\x89PNG truncated")
    assert "frame001.png" in _error(tmp_path, bad)  # grey, alpha and 16-bit files are accepted: test_image_folders.py
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 8, 8), np.float32))
    assert "expects" in _error(tmp_path, tmp_path / "wrong.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "pickle" in _error(tmp_path, tmp_path / "obj.npy")
    (tmp_path / "x.txt").write_text("1 2 3")
    assert "unknown calibration data format" in _error(tmp_path, tmp_path / "x.txt")
    assert "without an image input" in _error(tmp_path, None, spec=None, image_input=None)
