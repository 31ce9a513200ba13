"""The CLI contract, command by command: a bad input gets its exit code, one error line, no traceback, no stray files.

Every command ``edgedl --help`` lists is here with the bad inputs a user can give it: missing files,
option values out of range, unknown URIs, outputs that cannot be written. ``convert``'s bad model
files, calibration folders and labels are in tests/test_cli.py and are not repeated here.

Exit codes are those of edgedl/errors.py (2 usage, 3 input, 5 bundle, 6 calibration, 7 gate, 8 output,
9 missing dependency, 10 device); click's own usage errors exit 2 and print usage, a hint and one
``Error:`` line. A case may name an ``output`` (relative to the test's folder) that the command may
touch; nothing else in the folder may change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fake_tensorrt import install
from tiny import tiny_classifier

from edgedl.cli.main import main
from edgedl.device.jetson import detect_jetson

Snapshot = dict[str, tuple[bool, int, int]]
#: What libraries edgedl loads write on their own, in the home and cache folders the test points them at.
THIRD_PARTY = ("home/intel", "cache/gstreamer-1.0")  # OpenVINO's telemetry id; GStreamer's plugin registry


@dataclass(frozen=True)
class Case:
    """One bad command line: ``{t}`` is the test's folder, ``{b}`` a valid bundle in it, ``{m}`` a valid ONNX model."""

    args: tuple[str, ...]
    code: int
    names: str  # what the error line must mention (the file, option or value at fault)
    output: str | None = None  # the one path the command may change
    tensorrt: bool = False  # run with the fake TensorRT installed
    setup: Callable[[Path], object] | None = None


def _alter_variant(t: Path) -> None:
    (t / "m.edgedl" / "model.onnx").write_bytes(b"not the model the manifest hashed")


def _not_on_a_jetson(t: Path) -> None:
    if detect_jetson(Path("/")) is not None:
        pytest.skip("this machine is a Jetson: --require jetson is met")


def _future_manifest(t: Path) -> None:
    manifest = t / "m.edgedl" / "edgedl.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "schema_version": 99}))


OUT = ("-o", "{t}/out.edgedl")
SYN = ("--source", "synthetic://shapes")

CASES: dict[str, Case] = {
    # --- convert (bad model files, calibration folders and labels: tests/test_cli.py)
    "convert: a URL instead of a file": Case(("convert", "https://example.com/m.onnx"), 3, "https://example.com/m.onnx"),
    "convert: --calib-samples 0": Case(("convert", "{m}", "--calib-samples", "0", *OUT), 2, "--calib-samples"),
    "convert: unknown --calib-method": Case(("convert", "{m}", "--calib-method", "kl", *OUT), 2, "--calib-method"),
    "convert: unknown --target": Case(("convert", "{m}", "--target", "gpu", *OUT), 2, "--target"),
    "convert: --min-cosine not a number": Case(("convert", "{m}", "--min-cosine", "high", *OUT), 2, "--min-cosine"),
    "convert: --min-detections above 1": Case(("convert", "{m}", "--min-detections", "1.5", *OUT), 2, "--min-detections"),
    "convert: --layout on an ONNX file": Case(("convert", "{m}", "--layout", "nhwc", *OUT), 2, "layout"),
    "convert: --tolerance on an ONNX file": Case(("convert", "{m}", "--tolerance", "1e-3", *OUT), 2, "tolerance"),
    "convert: --input-shape with a zero dim": Case(("convert", "{m}", "--input-shape", "images=0x3x16x16", *OUT), 2,
                                                   "images=0x3x16x16"),
    "convert: --calib-data missing": Case(("convert", "{m}", "--int8", "--calib-data", "{t}/nope.npy", *OUT), 6,
                                          "nope.npy"),
    "convert: --calib-data of an unknown kind": Case(("convert", "{m}", "--int8", "--calib-data", "{t}/notes.txt", *OUT),
                                                     6, "notes.txt"),
    "convert: --labels is a folder": Case(("convert", "{m}", "--labels", "{t}/photos", *OUT), 3, "photos"),
    "convert: accuracy gate nobody passes": Case(("convert", "{m}", "--int8", "--calib-data", "{t}/calib.npy",
                                                  "--min-cosine", "2", *OUT), 7, "accuracy gate"),
    "convert: -o in a missing folder": Case(("convert", "{m}", "-o", "{t}/nodir/out.edgedl"), 8, "nodir"),
    "convert: --force onto a folder that is not a bundle": Case(("convert", "{m}", "-o", "{t}/photos", "--force"), 8,
                                                                 "photos"),
    "convert: --force onto the model itself": Case(("convert", "{m}", "-o", "{m}", "--force"), 8, "net.onnx"),
    # --- info
    "info: missing bundle": Case(("info", "{t}/nope.edgedl"), 5, "nope.edgedl"),
    "info: a folder without a manifest": Case(("info", "{t}/photos"), 5, "photos"),
    "info: an altered variant file": Case(("info", "{b}"), 5, "model.onnx", setup=_alter_variant),
    "info: a manifest from a newer edgedl": Case(("info", "{b}"), 5, "edgedl.json", setup=_future_manifest),
    "info: unknown option": Case(("info", "{b}", "--yaml"), 2, "--yaml"),
    # --- build (without TensorRT: tests/test_runtime_cli.py)
    "build: missing bundle": Case(("build", "{t}/nope.edgedl"), 5, "nope.edgedl"),
    "build: unknown --precision": Case(("build", "{b}", "--precision", "fp64"), 2, "--precision"),
    "build: --shape not a shape": Case(("build", "{b}", "--shape", "images"), 2, "--shape"),
    "build: --shape for an unknown input": Case(("build", "{b}", "--shape", "pixels=1x3x16x16"), 2, "pixels",
                                                output="m.edgedl/engines", tensorrt=True),
    "build: --workspace 0": Case(("build", "{b}", "--workspace", "0"), 2, "workspace", output="m.edgedl/engines",
                                 tensorrt=True),
    "build: --dla-core -1": Case(("build", "{b}", "--precision", "fp16", "--dla-core", "-1"), 2, "DLA core",
                                 output="m.edgedl/engines", tensorrt=True),
    "build: FP32 on the DLA": Case(("build", "{b}", "--precision", "fp32", "--dla-core", "0"), 2, "DLA",
                                   output="m.edgedl/engines", tensorrt=True),
    "build: a DLA core the device lacks": Case(("build", "{b}", "--precision", "fp16", "--dla-core", "5"), 10,
                                               "DLA core 5", output="m.edgedl/engines", tensorrt=True),
    "build: a CUDA device the machine lacks": Case(("build", "{b}", "--device", "3"), 10, "device 3", tensorrt=True),
    # --- compare
    "compare: missing bundle": Case(("compare", "{t}/nope.edgedl"), 5, "nope.edgedl"),
    "compare: unknown precision": Case(("compare", "{b}", "--precisions", "fp64"), 2, "fp64"),
    "compare: --data missing": Case(("compare", "{b}", "--data", "{t}/nope.npy"), 6, "nope.npy",
                                    output="m.edgedl/engines"),
    "compare: --rounds 0": Case(("compare", "{b}", "--rounds", "0"), 2, "--rounds"),
    "compare: --min-detections below 0": Case(("compare", "{b}", "--min-detections", "-0.1"), 2, "--min-detections"),
    "compare: --samples 0": Case(("compare", "{b}", "--samples", "0"), 2, "--samples"),
    # --- run
    "run: missing bundle": Case(("run", "{t}/nope.edgedl", *SYN), 5, "nope.edgedl"),
    "run: no --source": Case(("run", "{b}"), 2, "--source"),
    "run: unknown source scheme": Case(("run", "{b}", "--source", "webcam://0"), 2, "webcam"),
    "run: source file missing": Case(("run", "{b}", "--source", "{t}/clip.mp4"), 3, "clip.mp4"),
    "run: sink of an unknown kind": Case(("run", "{b}", *SYN, "--sink", "{t}/out.xyz"), 2, "out.xyz"),
    # The video sink finds out at its first frame, after the model loaded (edgedl/sinks checks with os.access).
    "run: sink on a read-only file system": Case(("run", "{b}", *SYN, "--sink", "/proc/edgedl.mp4"), 8, "/proc",
                                                 output="m.edgedl/engines"),
    "run: --json on a read-only file system": Case(("run", "{b}", *SYN, "--max-frames", "2", "--json",
                                                    "/proc/edgedl.json"), 8, "/proc"),
    "run: --json names a folder": Case(("run", "{b}", *SYN, "--max-frames", "2", "--json", "{t}/photos"), 8, "photos"),
    "run: --conf above 1": Case(("run", "{b}", *SYN, "--conf", "2"), 2, "--conf"),
    "run: --top-k 0": Case(("run", "{b}", *SYN, "--top-k", "0"), 2, "--top-k"),
    # The pipeline checks these against the model, so it is loaded (its CPU runtime choice cached) first.
    "run: --max-frames 0": Case(("run", "{b}", *SYN, "--max-frames", "0"), 2, "max_frames", output="m.edgedl/engines"),
    "run: unknown --postprocess": Case(("run", "{b}", *SYN, "--postprocess", "yolov99"), 2, "yolov99",
                                       output="m.edgedl/engines"),
    "run: unknown --backend": Case(("run", "{b}", *SYN, "--backend", "cuda"), 2, "--backend"),
    # --- demo
    "demo: --frames 0": Case(("demo", "--frames", "0"), 2, "--frames"),
    "demo: --fps below 0": Case(("demo", "--fps", "-1"), 2, "--fps"),
    "demo: --out on a read-only file system": Case(("demo", "--out", "/proc/edgedl-demo"), 8, "/proc/edgedl-demo"),
    "demo: --out names a file": Case(("demo", "--out", "{t}/notes.txt"), 8, "notes.txt"),
    # --- doctor
    "doctor: unknown capability": Case(("doctor", "--require", "quantum"), 2, "quantum"),
    "doctor: a capability this machine lacks": Case(("doctor", "--require", "jetson"), 9, "jetson",
                                                    setup=_not_on_a_jetson),
    # --- profile
    "profile: no bundle": Case(("profile",), 2, "BUNDLE"),
    "profile: missing bundle": Case(("profile", "{t}/nope.edgedl"), 5, "nope.edgedl"),
    "profile: --runs 0": Case(("profile", "{b}", "--runs", "0"), 2, "--runs"),
    "profile: --duration below 0": Case(("profile", "{b}", "--duration", "-1"), 2, "--duration"),
    "profile: --batch 0": Case(("profile", "{b}", "--batch", "0"), 2, "--batch"),
    "profile: --warmup below 0": Case(("profile", "{b}", "--warmup", "-1"), 2, "--warmup"),
    "profile: --top 0": Case(("profile", "{b}", "--top", "0"), 2, "--top"),
    "profile: --interval-ms 0": Case(("profile", "{b}", "--interval-ms", "0"), 2, "--interval-ms"),
    "profile: --shape not a shape": Case(("profile", "{b}", "--shape", "images"), 2, "--shape"),
    "profile: --compare not BACKEND:PRECISION": Case(("profile", "{b}", "--compare", "fast"), 2, "fast"),
    "profile: unknown source scheme": Case(("profile", "{b}", "--source", "webcam://0"), 2, "webcam"),
    "profile: --json on a read-only file system": Case(("profile", "{b}", "--json", "/proc/edgedl.json"), 8, "/proc"),
    "profile: --json names a folder": Case(("profile", "{b}", "--json", "{t}/photos"), 8, "photos"),
    "profile: --plot in a missing folder": Case(("profile", "{b}", "--plot", "{t}/nodir/p.png"), 8, "nodir"),
    "profile: --diff of a missing report": Case(("profile", "--diff", "{t}/nope.json", "{t}/report.json"), 3,
                                                "nope.json"),
    "profile: --diff of a file that is not JSON": Case(("profile", "--diff", "{t}/broken.json", "{t}/report.json"), 3,
                                                       "broken.json"),
    "profile: --diff of JSON that is not a report": Case(("profile", "--diff", "{t}/report.json", "{t}/report.json"),
                                                         3, "report.json"),
    "profile: --diff with a bundle": Case(("profile", "{b}", "--diff", "{t}/report.json", "{t}/report.json"), 2,
                                          "--diff"),
    "profile: --noise below 0": Case(("profile", "--diff", "{t}/report.json", "{t}/report.json", "--noise", "-1"), 2,
                                     "--noise"),
    # --- the group itself
    "edgedl: unknown command": Case(("convertt",), 2, "convertt"),
    "edgedl: unknown option": Case(("--fast",), 2, "--fast"),
}

#: Cases that break the contract in modules outside this change; strict, so fixing one fails here until the mark goes.
KNOWN_GAPS: dict[str, str] = {}


def _params() -> list[object]:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[name])) if name in KNOWN_GAPS
            else name for name in CASES]


def test_every_command_is_in_the_table() -> None:
    listed = set(main.commands)
    covered = {name.split(":")[0] for name in CASES} - {"edgedl"}
    assert covered == listed, f"commands without contract cases: {sorted(listed - covered)}"


def snapshot(root: Path, skip: Path | None) -> Snapshot:
    """Each path under ``root`` but ``skip`` and third-party files: whether it is a folder, and a file's size and mtime."""
    skipped = [root / name for name in THIRD_PARTY] + ([skip] if skip is not None else [])
    found = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skipped):
            continue
        info = path.lstat()
        # A folder's own times change with what is added under it; its entries are compared one by one instead.
        found[str(path.relative_to(root))] = (True, 0, 0) if path.is_dir() else (False, info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture
def folder(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's folder: working directory, cache and home all inside it, so a stray write shows in the snapshot."""
    assert bundle == tmp_path / "m.edgedl"
    tiny_classifier(tmp_path / "net.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (24, 3, 16, 16)).astype(np.float32))
    (tmp_path / "notes.txt").write_text("not calibration data\n")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"someone else's file")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "report.json").write_text(json.dumps({"a": 1}))
    for name in ("home", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEDL_CACHE_DIR", raising=False)
    return tmp_path


def error_lines(stderr: str) -> list[str]:
    """The lines that state an error: edgedl's own, or click's usage error."""
    return [line for line in stderr.splitlines() if line.startswith(("edgedl: error:", "Error:"))]


@pytest.mark.parametrize("name", _params())
def test_bad_input_exits_with_its_code_and_one_line(name: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    if case.setup is not None:
        case.setup(folder)
    if case.tensorrt:
        install("10.3.0", monkeypatch=monkeypatch)
    args = [arg.format(t=folder, b=folder / "m.edgedl", m=folder / "net.onnx") for arg in case.args]
    skip = folder / case.output if case.output else None
    before = snapshot(folder, skip)
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    assert result.exit_code == case.code, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert case.names.lower() in lines[0].lower(), lines[0]
    if lines[0].startswith("edgedl: error:"):
        assert "fix: " in lines[0], f"no fix in: {lines[0]}"
    assert snapshot(folder, skip) == before, "a failed command changed files outside its output"


def test_force_never_replaces_what_convert_did_not_write(folder: Path) -> None:
    """``--force`` replaces a bundle, or an empty folder, and nothing else."""
    (folder / "empty").mkdir()
    result = CliRunner().invoke(main, ["convert", str(folder / "net.onnx"), "-o", str(folder / "empty"), "--force"])
    assert result.exit_code == 0, result.stderr
    assert (folder / "empty" / "edgedl.json").is_file()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    assert os.listdir(folder / "photos") == ["holiday.jpg"]
