"""Killed processes and full disks: a bundle or an engine is the previous valid one, the new one, or absent.

Each test runs the real command line in a child process and kills it with SIGKILL: at a step named
by its ``--verbose`` log on stderr, inside the exact rename that publishes a result (a hook in the
child kills it in ``os.replace``), or after a random delay. Whatever the child left, the output
opens with every hash intact or is not there, and the next run cleans up after the dead one. A full
disk is ``RLIMIT_FSIZE`` in the child (a write past it fails with EFBIG; SIGXFSZ is ignored), which
works as root too, where ``chmod`` stops nothing. The two-process build of one engine is in
tests/test_runtime_engine_cache.py; here the process holding the lock is killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from child_processes import start_child, stop_child
from click.testing import CliRunner
from fake_tensorrt import install
from tiny import tiny_classifier

import edgedl
from edgedl.bundle import Bundle
from edgedl.cli.main import main
from edgedl.errors import OutputError
from edgedl.runtimes.tensorrt.engine_cache import EngineCache

TESTS = Path(__file__).resolve().parent

#: Runs the CLI; argv[1] is JSON: ``max_file_bytes`` caps every file the process writes (a full disk: a write past
#: it fails with EFBIG once SIGXFSZ is ignored), ``tensorrt`` installs the fake TensorRT, ``kill`` = {"dst", "when"}
#: makes the process SIGKILL itself just ``before`` or ``after`` the os.replace whose destination ends with ``dst``.
CHILD = f"""
import json, os, resource, signal, sys
sys.path.insert(0, {str(TESTS)!r})
options = json.loads(sys.argv[1])
if options.get("max_file_bytes"):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (options["max_file_bytes"],) * 2)
if options.get("tensorrt"):
    import fake_tensorrt
    fake_tensorrt.install("10.3.0")
kill = options.get("kill")
if kill:
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        hit = os.fspath(dst).endswith(kill["dst"])
        if hit and kill["when"] == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if hit and kill["when"] == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace
from edgedl.cli.main import main
main(sys.argv[2:], prog_name="edgedl")
"""


def spawn(args: list[str], *, tensorrt: bool = False, kill: dict[str, str] | None = None, max_file_bytes: int = 0,
          env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``edgedl ARGS`` in a child (see ``CHILD`` for the options)."""
    options = json.dumps({"tensorrt": tensorrt, "kill": kill, "max_file_bytes": max_file_bytes})
    child = start_child([sys.executable, "-c", CHILD, options, *args], stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    _children.append(child)
    return child


_children: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_orphans() -> Iterator[None]:
    """Kill whatever child a failed test left running."""
    yield
    for child in _children:
        stop_child(child)
    _children.clear()


def read_until(child: subprocess.Popen[str], text: str) -> str:
    """``child``'s stderr up to the first line containing ``text``, which must come."""
    assert child.stderr is not None
    seen = []
    for line in child.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"the child never logged {text!r}:\n{''.join(seen)}")


def finish(child: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for ``child``; its exit code and the rest of its stderr."""
    _, err = child.communicate(timeout=60)
    return child.returncode, err


def kill_at_line(child: subprocess.Popen[str], text: str, delay: float = 0.0) -> str:
    """SIGKILL ``child`` (``Popen.kill``) ``delay`` seconds after a stderr line containing ``text``; returns its stderr."""
    log = read_until(child, text)
    time.sleep(delay)
    child.kill()
    return log + finish(child)[1]


def kill_when_written(child: subprocess.Popen[str], pattern: str, folder: Path) -> str:
    """SIGKILL ``child`` as soon as a file matching the glob ``pattern`` under ``folder`` exists; returns its stderr."""
    deadline = time.monotonic() + 60
    while not list(folder.glob(pattern)):
        assert child.poll() is None and time.monotonic() < deadline, f"the child did not write {pattern}"
        time.sleep(0.001)
    child.kill()
    return finish(child)[1]


def leftovers(folder: Path) -> list[str]:
    """Hidden files and folders: what a writer stages, or a killed one left."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@dataclass(frozen=True)
class Kill:
    """Where to kill a child: at a stderr line (plus ``delay``), when a file matching the glob ``staged`` shows up, or
    inside the rename to a path ending in ``dst``; and what its output may be afterwards."""

    states: tuple[str, ...]
    line: str | None = None
    delay: float = 0.0
    staged: str | None = None
    dst: str | None = None
    when: str = "before"


def run_and_kill(args: list[str], kill: Kill, folder: Path, **options: Any) -> str:
    """Run ``edgedl ARGS`` and kill it as ``kill`` says; its stderr. A hook that never fired fails here."""
    if kill.dst is not None:
        child = spawn(args, kill={"dst": kill.dst, "when": kill.when}, **options)
        log = finish(child)[1]
        assert child.returncode == -signal.SIGKILL, f"the child was never inside the rename to *{kill.dst}:\n{log}"
        return log
    child = spawn(args, **options)
    if kill.staged is not None:
        return kill_when_written(child, kill.staged, folder)
    assert kill.line is not None
    return kill_at_line(child, kill.line, kill.delay)


# --------------------------------------------------------------------------------------------- convert


# A whole conversion of the tiny model takes about 0.9 s here: 0.2 s to start, 0.3 s to clean, 0.2 s to calibrate,
# quantize and validate, then the manifest and the renames.
STAGED = ".out.edgedl.*.partial/out.edgedl/"  # where staged_dir builds the new bundle
ANY = ("previous", "absent", "new")
CONVERT_KILLS = {
    "cleaning the model": Kill(("previous",), line="INFO: cleaning"),
    "writing model.onnx": Kill(("previous",), staged=STAGED + "model.onnx"),
    "calibrating": Kill(("previous",), line="INFO: calibrating"),
    "quantizing for TensorRT": Kill(("previous",), staged=STAGED + "model.int8.onnx"),
    "validating FP16": Kill(("previous",), staged=STAGED + "model.fp16.onnx"),
    "writing the manifest": Kill(("previous", "new"), line="INFO: writing edgedl.json"),
    "moving the bundle into place": Kill(ANY, line="INFO: moving"),
    "before the old bundle moves aside": Kill(("previous",), dst="/previous", when="before"),
    "with the old bundle moved aside": Kill(("absent",), dst="/previous", when="after"),
    "right after the new bundle moved in": Kill(("new",), dst="/out.edgedl", when="after"),
    **{f"at random {i}": Kill(ANY, line="INFO: loading", delay=random.Random(i).uniform(0.0, 0.5)) for i in range(4)},
}
FULL = ["--int8", "--fp16", "--target", "all", "--calib-samples", "24", "--min-top1", "0.5"]


@pytest.fixture
def previous(tmp_path: Path) -> tuple[Path, str]:
    """A model, calibration data, and a valid bundle at ``out.edgedl`` (FP32 only) that a --force run replaces."""
    tiny_classifier(tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (40, 3, 16, 16)).astype(np.float32))
    bundle = edgedl.convert(tmp_path / "m.onnx", tmp_path / "out.edgedl")
    return bundle.path, (bundle.path / "edgedl.json").read_text()


def bundle_state(out: Path, previous_manifest: str | None) -> str:
    """``absent``, ``previous`` or ``new``; anything half-written fails here (every file's hash is checked)."""
    if not out.exists():
        return "absent"
    bundle = Bundle.open(out)
    if (out / "edgedl.json").read_text() == previous_manifest:
        return "previous"
    assert set(bundle.manifest.variants) == {"fp32", "int8", "int8-trt", "fp16"}, "a new bundle, but not all of it"
    return "new"


def convert_args(folder: Path, verbose: bool = True) -> list[str]:
    return ["convert", str(folder / "m.onnx"), "-o", str(folder / "out.edgedl"), "--calib-data",
            str(folder / "calib.npy"), *FULL, "--force", *(["--verbose"] if verbose else [])]


@pytest.mark.parametrize("step", list(CONVERT_KILLS))
def test_convert_killed_leaves_the_previous_bundle_or_none_and_the_next_run_cleans_up(
        step: str, previous: tuple[Path, str]) -> None:
    out, manifest = previous
    kill = CONVERT_KILLS[step]
    log = run_and_kill(convert_args(out.parent), kill, out.parent)
    state = bundle_state(out, manifest)
    assert state in kill.states, f"killed {step}: output is {state}\n{log}"
    if state == "absent":  # killed between the two renames: the next run puts the previous bundle back first
        with pytest.raises(OutputError, match="already exists"):
            edgedl.convert(out.parent / "m.onnx", out)
        assert bundle_state(out, manifest) == "previous"
    edgedl.convert(out.parent / "m.onnx", out, force=True)
    assert leftovers(out.parent) == [], "the next run left a killed run's staging folder behind"
    assert Bundle.open(out).manifest.precisions == ["fp32"]


def test_convert_killed_with_no_previous_bundle_leaves_none(tmp_path: Path) -> None:
    tiny_classifier(tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (40, 3, 16, 16)).astype(np.float32))
    run_and_kill(convert_args(tmp_path), Kill(("absent",), dst="/out.edgedl", when="before"), tmp_path)
    assert not (tmp_path / "out.edgedl").exists()
    assert len(leftovers(tmp_path)) == 1, "the killed run's staging folder (it could not clean it up)"
    edgedl.convert(tmp_path / "m.onnx", tmp_path / "out.edgedl")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("max_bytes", [1024, 6000], ids=["first-write-fails", "manifest-write-fails"])
def test_convert_on_a_full_disk_fails_in_one_line_and_keeps_the_previous_bundle(
        max_bytes: int, previous: tuple[Path, str]) -> None:
    out, manifest = previous
    code, err = finish(spawn(convert_args(out.parent, verbose=False), max_file_bytes=max_bytes))
    assert code == 8, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("edgedl: error:") and "cannot write (File too large)" in lines[-1], err
    assert str(out) in lines[-1] and "fix:" in lines[-1] and "Traceback" not in err
    assert bundle_state(out, manifest) == "previous"
    assert leftovers(out.parent) == []


def test_convert_into_a_read_only_folder_fails_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: chmod does not stop writes (full disks are covered with RLIMIT_FSIZE)")
        result = CliRunner().invoke(main, ["convert", str(tiny_classifier(tmp_path / "m.onnx")), "-o",
                                           str(folder / "m.edgedl")])
        assert result.exit_code == 8 and "not writable" in result.stderr and "fix:" in result.stderr
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------------------------------------ engine cache

def build_args(bundle: Path) -> list[str]:
    return ["build", str(bundle), "--precision", "fp16"]


def engines_state(folder: Path) -> str:
    """``none`` or ``ok`` (one engine whose record and plan agree); anything half-written fails here."""
    entries = EngineCache(folder).entries() if folder.is_dir() else []
    assert all(entry["status"] == "ok" for entry in entries), entries
    assert len(entries) <= 1
    return "ok" if entries else "none"


ENGINE_KILLS = {
    "while TensorRT builds": Kill(("none",), line="Building engine"),
    "with the plan written, before its rename": Kill(("none",), dst=".plan", when="before"),
    "with the plan in place, before its record": Kill(("none",), dst=".json", when="before"),
    "right after the record": Kill(("ok",), dst=".json", when="after"),
}


@pytest.mark.parametrize("step", list(ENGINE_KILLS))
def test_engine_writer_killed_leaves_no_half_engine_and_the_next_build_cleans_up(
        step: str, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engines = bundle / "engines"
    kill = ENGINE_KILLS[step]
    slow = {"FAKE_TRT_BUILD_SECONDS": "30"} if kill.line else {}  # a build long enough to be killed in
    log = run_and_kill(build_args(bundle), kill, engines, tensorrt=True, env=slow)
    (expected,) = kill.states
    assert engines_state(engines) == expected, log
    install("10.3.0", monkeypatch=monkeypatch)
    result = CliRunner().invoke(main, build_args(bundle))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("built:" if expected == "none" else "already cached:"), result.stdout
    assert engines_state(engines) == "ok"
    assert not [p.name for p in engines.iterdir() if p.name.endswith(".tmp")], "a killed writer's temporary file"


@pytest.mark.parametrize("damage", [b"", b"FTRTPLAN"], ids=["zero-byte", "truncated"])
def test_a_damaged_plan_is_detected_and_rebuilt(damage: bytes, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    assert CliRunner().invoke(main, build_args(bundle)).exit_code == 0
    (plan,) = (bundle / "engines").glob("*.plan")
    good = plan.read_bytes()
    plan.write_bytes(damage)  # what a disk that lost power before the data reached it can leave
    result = CliRunner().invoke(main, build_args(bundle))
    assert result.exit_code == 0 and result.stdout.startswith("built:"), result.stdout + result.stderr
    assert "does not match its recorded sha256" in result.stderr
    assert plan.read_bytes() == good and engines_state(bundle / "engines") == "ok"


def test_killing_the_builder_holding_the_lock_lets_the_waiting_one_build(bundle: Path) -> None:
    builds = bundle.parent / "builds.log"
    env = {"FAKE_TRT_BUILD_LOG": str(builds)}
    first = spawn(build_args(bundle), tensorrt=True, env={**env, "FAKE_TRT_BUILD_SECONDS": "60"})
    read_until(first, "Building engine")
    second = spawn(build_args(bundle), tensorrt=True, env={**env, "FAKE_TRT_BUILD_SECONDS": "0.3"})
    waiting = read_until(second, "another process is building engine")
    first.kill()
    finish(first)
    code, err = finish(second)
    assert code == 0, waiting + err
    assert [line.split()[0] for line in builds.read_text().splitlines()] == [str(second.pid)], "one finished build"
    assert engines_state(bundle / "engines") == "ok"


def test_engine_cache_on_a_full_disk_fails_in_one_line_and_writes_nothing(bundle: Path) -> None:
    code, err = finish(spawn(build_args(bundle), tensorrt=True, max_file_bytes=1024))
    assert code == 8, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("edgedl: error:") and "cannot write (File too large)" in last and ".plan" in last, err
    assert "Traceback" not in err
    engines = bundle / "engines"
    assert sorted(p.suffix for p in engines.iterdir() if not p.name.startswith("timing-")) == [".lock"]


# ----------------------------------------------------------------------------------------- other outputs


REPORTS = {  # each writes a JSON report (over 256 bytes) at the end of its run
    "profile --json": ["profile", "--runs", "3", "--warmup", "0", "--no-telemetry", "--json"],
    "run --json": ["run", "--source", "synthetic://shapes", "--max-frames", "3", "--quiet", "--json"],
}


@pytest.mark.parametrize("command", list(REPORTS))
def test_report_on_a_full_disk_fails_in_one_line_and_writes_nothing(command: str, bundle: Path) -> None:
    report = bundle.parent / "report.json"
    name, *options = REPORTS[command]
    code, err = finish(spawn([name, str(bundle), *options, str(report)], max_file_bytes=256))
    assert code == 8, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"edgedl: error: {report}: cannot write (File too large)") and "fix:" in last, err
    assert "Traceback" not in err
    assert leftovers(bundle.parent) == [] and not report.exists()


def test_a_bundle_gets_the_modes_of_the_users_umask(tmp_path: Path) -> None:
    """Staging must not leak its private modes: a bundle is copied to devices and read by services."""
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 1, (40, 3, 16, 16)).astype(np.float32))
    umask = os.umask(0o022)
    try:
        bundle = edgedl.convert(tiny_classifier(tmp_path / "m.onnx"), tmp_path / "m.edgedl", int8=True, target="all",
                                calib_data=tmp_path / "calib.npy", calib_samples=24, min_top1=0.5)
    finally:
        os.umask(umask)
    assert bundle.path.stat().st_mode & 0o777 == 0o755
    files = {p.name: p.stat().st_mode & 0o777 for p in bundle.path.iterdir()}
    assert "calibration.cache" in files and set(files.values()) == {0o644}, files
