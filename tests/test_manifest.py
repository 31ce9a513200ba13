"""The manifest schema and bundle integrity checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgedl.bundle import Bundle
from edgedl.errors import BundleError
from edgedl.fsutil import sha256_file
from edgedl.manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest, TensorInfo, Variant
from edgedl.preprocess import PreprocessSpec


def make_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "m.edgedl"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not really onnx, hashes only")
    manifest = Manifest(
        name="m", source={"file": "m.onnx", "sha256": "0" * 64, "format": "onnx"},
        inputs=[TensorInfo("images", "float32", ["batch", 3, 8, 8], "NCHW")],
        outputs=[TensorInfo("logits", "float32", ["batch", 4])],
        variants={"fp32": Variant("model.onnx", "fp32", "any", sha256_file(folder / "model.onnx"))},
        task="classify", labels=list("abcd"), preprocess=PreprocessSpec(width=8, height=8), preprocess_input="images",
    )
    (folder / MANIFEST_NAME).write_text(manifest.dumps())
    return folder


def edit(folder: Path, **changes: object) -> None:
    data = json.loads((folder / MANIFEST_NAME).read_text())
    data.update(changes)
    (folder / MANIFEST_NAME).write_text(json.dumps(data))


def test_round_trip(tmp_path: Path) -> None:
    bundle = Bundle.open(make_bundle(tmp_path))
    m = bundle.manifest
    assert m.schema_version == SCHEMA_VERSION and m.precisions == ["fp32"]
    assert m.inputs[0].shape == ["batch", 3, 8, 8] and m.preprocess == PreprocessSpec(width=8, height=8)
    assert Manifest.from_dict(json.loads(m.dumps())).to_dict() == m.to_dict()


def test_newer_schema_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path)
    edit(folder, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(BundleError, match="newer than this edgedl") as info:
        Bundle.open(folder)
    assert "pip install -U edgedl" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("changes", [{"schema_version": "1"}, {"schema_version": 0}, {"inputs": "x"},
                                     {"task": "dance"}, {"variants": {}},
                                     {"variants": {"fp32": {"file": "../../etc/passwd", "precision": "fp32",
                                                            "target": "any", "sha256": "0"}}},
                                     {"preprocess": {"width": 8, "height": 8, "resize": "zoom"}}])
def test_malformed_manifests_are_bundle_errors(tmp_path: Path, changes: dict) -> None:
    folder = make_bundle(tmp_path)
    edit(folder, **changes)
    with pytest.raises(BundleError) as info:
        Bundle.open(folder)
    assert str(folder) in str(info.value)


def test_not_json_and_missing_manifest(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path)
    (folder / MANIFEST_NAME).write_text("{ nope")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.open(folder)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match="no edgedl.json"):
        Bundle.open(folder)
    with pytest.raises(BundleError, match="no such bundle"):
        Bundle.open(tmp_path / "absent.edgedl")


def test_altered_or_deleted_model_file_is_detected(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path)
    (folder / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="altered"):
        Bundle.open(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        Bundle.open(folder)
