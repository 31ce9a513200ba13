"""The CLI contract: bad input gets one line naming the file and the fix, a non-zero exit, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx.external_data_helper import set_external_data
from tiny import tiny_classifier

from edgedl.cli.main import main


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in root.rglob("*")}


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def external(tmp_path: Path, location: str) -> Path:
    model = onnx.load(str(tiny_classifier(tmp_path / "base.onnx")))
    tensor = next(t for t in model.graph.initializer if t.name == "w1")
    set_external_data(tensor, location=location)
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    (tmp_path / "base.onnx").unlink()
    return path


def _symlink_out(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(8 * 3 * 3 * 3, np.float32).tobytes())
    path = external(tmp_path, "weights.bin")
    os.symlink(secret, path.parent / "weights.bin")
    return path


def _calib_dir(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "calib"
    folder.mkdir()
    if kind == "unreadable":
        cv2.imwrite(str(folder / "ok.png"), np.zeros((8, 8, 3), np.uint8))
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    elif kind == "float":  # grey, alpha and 16-bit images are converted; float pixels have no one 8-bit meaning
        cv2.imwrite(str(folder / "float.tif"), np.zeros((8, 8, 3), np.float32))
    return folder


Case = Callable[[Path], tuple[list[str], str]]
VALID = "model.onnx"


def _valid(tmp_path: Path) -> str:
    return str(tiny_classifier(tmp_path / VALID))


CASES: dict[str, Case] = {
    "missing path": lambda t: (["convert", str(t / "nope.onnx")], "nope.onnx"),
    "directory": lambda t: (["convert", str(t)], str(t)),
    "empty file": lambda t: ((t / "e.onnx").write_bytes(b"") and [] or ["convert", str(t / "e.onnx")], "e.onnx"),
    "truncated": lambda t: ((t / "t.onnx").write_bytes(Path(_valid(t)).read_bytes()[:300]) and []
                            or ["convert", str(t / "t.onnx")], "t.onnx"),
    "random bytes": lambda t: ((t / "r.onnx").write_bytes(np.random.default_rng(0).bytes(4096)) and []
                               or ["convert", str(t / "r.onnx")], "r.onnx"),
    "git lfs pointer": lambda t: ((t / "l.onnx").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 1234\n") and []
        or ["convert", str(t / "l.onnx")], "git lfs"),
    "external data ../": lambda t: (["convert", str(external(t, "../secret.bin"))], "model.onnx"),
    "external data absolute": lambda t: (["convert", str(external(t, "/etc/passwd"))], "model.onnx"),
    "external data symlink": lambda t: (["convert", str(_symlink_out(t))], "model.onnx"),
    "calib folder without images": lambda t: (["convert", _valid(t), "--int8", "--calib-data",
                                               str(_calib_dir(t, "empty"))], "calib"),
    "calib unreadable image": lambda t: (["convert", _valid(t), "--int8", "--calib-data",
                                          str(_calib_dir(t, "unreadable"))], "broken.jpg"),
    "calib float pixels": lambda t: (["convert", _valid(t), "--int8", "--calib-data",
                                      str(_calib_dir(t, "float"))], "float.tif"),
    "input-shape unknown input": lambda t: (["convert", _valid(t), "--input-shape", "pixels=1x3x16x16"], "pixels"),
    "input-shape wrong rank": lambda t: (["convert", _valid(t), "--input-shape", "images=1x16x16"], "images"),
    "input-shape not a shape": lambda t: (["convert", _valid(t), "--input-shape", "images=1xAx16"], "images=1xAx16"),
    "output parent is a file": lambda t: (["convert", _valid(t), "-o", str(Path(_valid(t)) / "out.edgedl")],
                                          "model.onnx"),
    "output on read-only filesystem": lambda t: (["convert", _valid(t), "-o", "/proc/edgedl-out.edgedl"], "/proc"),
    "labels missing": lambda t: (["convert", _valid(t), "--labels", str(t / "labels.txt")], "labels.txt"),
    "labels count mismatch": lambda t: ((t / "l.txt").write_text("a\nb\n") and []
                                        or ["convert", _valid(t), "--labels", str(t / "l.txt")], "l.txt"),
    "bad mean": lambda t: (["convert", _valid(t), "--mean", "0.5,x"], "--mean"),
    "info on a non-bundle": lambda t: (["info", _valid(t)], "model.onnx"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_cleanly(case: str, tmp_path: Path) -> None:
    args, named = CASES[case](tmp_path)
    before = snapshot(tmp_path)
    code, out, err = invoke(args)
    assert code != 0, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgedl: error:"), err
    assert named.lower() in lines[0].lower(), lines[0]
    assert "fix:" in lines[0] and "Traceback" not in err
    assert snapshot(tmp_path) == before, "a failed command wrote files"


def test_existing_output_is_kept_without_force(tmp_path: Path) -> None:
    model = _valid(tmp_path)
    assert invoke(["convert", model])[0] == 0
    bundle = tmp_path / "model.edgedl"
    manifest = (bundle / "edgedl.json").read_text()
    code, _, err = invoke(["convert", model, "--fp16"])
    assert code != 0 and "--force" in err
    assert (bundle / "edgedl.json").read_text() == manifest
    assert invoke(["convert", model, "--fp16", "--force"])[0] == 0
    assert json.loads((bundle / "edgedl.json").read_text())["precisions"] == ["fp32", "fp16"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_verbose_shows_traceback_and_real_exit_code(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "edgedl.cli.main", "convert", str(tmp_path / "x.onnx"),
                             "--verbose"], capture_output=True, text=True)
    assert result.returncode == 3 and "Traceback" in result.stderr
    quiet = subprocess.run([sys.executable, "-m", "edgedl.cli.main", "convert", str(tmp_path / "x.onnx")],
                           capture_output=True, text=True)
    assert quiet.returncode == 3 and "Traceback" not in quiet.stderr


def test_info_prints_and_emits_json(tmp_path: Path) -> None:
    model = _valid(tmp_path)
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    assert invoke(["convert", model, "--labels", str(tmp_path / "labels.txt")])[0] == 0
    code, out, _ = invoke(["info", str(tmp_path / "model.edgedl")])
    assert code == 0 and "classify (4 labels)" in out and "images" in out
    code, out, _ = invoke(["info", str(tmp_path / "model.edgedl"), "--json"])
    data = json.loads(out)
    assert data["labels"] == list("abcd") and data["schema_version"] == 1
