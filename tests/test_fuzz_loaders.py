"""Untrusted model files: every loader loads or refuses in one line, and no trick reads outside the model's folder.

The seeds, mutations and the contract live in tools/fuzz_loaders.py, which also runs for hours as a fuzz
harness; here hypothesis drives them, derandomized so that CI runs the same cases every time.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import fuzz_loaders as fuzz  # tools/fuzz_loaders.py, on sys.path through conftest.py
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgedl
from edgedl.cli.main import main
from edgedl.converters import keras_export
from edgedl.errors import BundleError, InputFileError, UnsafeFileError
from edgedl.fsutil import sha256_file
from edgedl.loading import onnx_load
from edgedl.manifest import MANIFEST_NAME
from edgedl.runtimes.tensorrt.engine_cache import EngineCache, engine_key

ROOT = Path(__file__).resolve().parent.parent
TOKEN = fuzz.CANARY.encode()
# Fuzzed pickles and archives make torch warn about protocols and deprecated loaders by the hundred.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def fuzzing(examples: int) -> settings:
    """A fixed number of derandomized examples; the deadline is generous (CI is slow), hangs are caught apart."""
    return settings(max_examples=examples, deadline=timedelta(seconds=5), derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> fuzz.Seeds:
    return fuzz.Seeds(tmp_path_factory.mktemp("fuzz"))


def load_mutated(seeds: fuzz.Seeds, name: str, data: st.DataObject) -> str:
    """Draw a mutation and its random choices, apply them to a copy of the seed and check the loader's contract."""
    target = fuzz.TARGETS[name]
    mutation = data.draw(st.sampled_from(sorted(target.mutations)), label="mutation")
    rng = data.draw(st.randoms(use_true_random=False), label="choices")
    seed_root, seed_path = seeds.get(name)
    with tempfile.TemporaryDirectory(dir=seeds.root) as tmp:
        return fuzz.check_contract(target.load, fuzz.mutate_copy(seed_root, seed_path, Path(tmp) / "case", mutation,
                                                                 target, rng))


# ------------------------------------------------------------------------------------------------ fuzzing

def fuzz_target(seeds: fuzz.Seeds, name: str, examples: int) -> None:
    """``examples`` derandomized mutations of the target's seed, each under the loader's contract."""
    seeds.get(name)  # built here, so that building it does not count against the first example's deadline

    @fuzzing(examples)
    @given(data=st.data())
    def mutate_and_load(data: st.DataObject) -> None:
        load_mutated(seeds, name, data)

    mutate_and_load()


@pytest.mark.parametrize("name", ["onnx", "onnx-external", "manifest", "bundle-model", "calibration-cache",
                                  "engine-record"])
def test_mutated_files_load_or_are_refused_in_one_line(seeds: fuzz.Seeds, name: str) -> None:
    fuzz_target(seeds, name, 150)


@pytest.mark.parametrize("name", ["torch-pickle", "torch-legacy", "torchscript", "pt2"])
def test_mutated_pytorch_files_load_or_are_refused(seeds: fuzz.Seeds, name: str) -> None:
    pytest.importorskip("torch")
    fuzz_target(seeds, name, 40)


@pytest.mark.parametrize(("name", "file"), [("onnx", "."), ("onnx-external", "."), ("onnx-external", "weights.data"),
                                            ("calibration-cache", "."), ("engine-record", "RECORD"),
                                            ("engine-record", "PLAN"), ("manifest", "edgedl.json")])
def test_every_truncation_loads_or_is_refused(seeds: fuzz.Seeds, tmp_path: Path, name: str, file: str) -> None:
    path = fuzz.copy_seed(*seeds.get(name), tmp_path / "case")
    victim = fuzz.resolve(path, file)
    data = victim.read_bytes()
    outcomes = []
    for cut in [*range(0, len(data), max(1, len(data) // 1500)), len(data)]:  # every offset (every few past 3000 B)
        victim.write_bytes(data[:cut])
        outcomes.append(fuzz.check_contract(fuzz.TARGETS[name].load, path))
    assert outcomes[-1] == "loaded" and outcomes[0].startswith(expected_outcome(name)), "the seed loads, nothing doesn't"


def test_a_worker_that_dies_is_reported_and_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness survives what the contract cannot catch in-process: here a loader that segfaults."""
    crash = tmp_path / "crash.py"
    crash.write_text("import os, signal, sys\n"
                     f"sys.path.insert(0, {str(ROOT / 'tools')!r})\n"
                     "import fuzz_loaders as f\n"
                     "f.TARGETS['calibration-cache'] = f.Target(f.seed_cache, lambda p: os.kill(os.getpid(), 11),\n"
                     "                                         f.TARGETS['calibration-cache'].mutations)\n"
                     "sys.exit(f.main())\n")
    monkeypatch.setattr(fuzz, "__file__", str(crash))
    assert fuzz.fuzz(["calibration-cache"], 0, 0.01, tmp_path / "kept") == 1
    out = capsys.readouterr().out
    assert "calibration-cache:0:0" in out and "worker died (-11)" in out and "failures:" in out
    assert (tmp_path / "kept" / "calibration-cache-0" / "calibration.cache").is_file(), "the crashing case is kept"


# ------------------------------------------------------------------------------------------------ runaway memory

def test_pathological_files_are_refused_within_bounded_memory() -> None:
    """Claims of huge tensors, /dev/zero and GiB files, zip bombs: refused under an address-space cap, fast."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz_loaders.py"), "--pathological"],
                          capture_output=True, text=True, timeout=300)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    expected = {n for n, (target, _, _) in fuzz.PATHOLOGICAL.items() if fuzz.available(fuzz.TARGETS[target])}
    assert {r["case"] for r in results} == expected
    for result in results:
        assert result["outcome"].startswith(expected_outcome(result["case"])), result
        assert result["peak_growth_mib"] < 128 and result["seconds"] < 10, result


def expected_outcome(what: str) -> str:
    """A damaged engine cache is a miss (``load`` gives None: "loaded"); every other loader refuses."""
    return "loaded" if what.startswith("engine") else "refused"


# ------------------------------------------------------------------------------------------------ hangs: FIFOs

@pytest.mark.parametrize(("name", "file"), [("onnx", "."), ("manifest", "edgedl.json"), ("calibration-cache", "."),
                                            ("engine-record", "RECORD"), ("engine-record", "PLAN")])
def test_a_fifo_in_place_of_a_file_never_blocks(seeds: fuzz.Seeds, tmp_path: Path, name: str, file: str) -> None:
    path = fuzz.copy_seed(*seeds.get(name), tmp_path / "case")
    victim = fuzz.resolve(path, file)
    victim.unlink()
    os.mkfifo(victim)
    assert fuzz.check_contract(fuzz.TARGETS[name].load, path, seconds=5).startswith(expected_outcome(name))


# ------------------------------------------------------------------------------------------------ regressions

def _edit_json(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000 + "]" * 100_000, "nesting too deep"),
    ('{"schema_version": ' + "9" * 5000 + "}", "number too long"),
    ('{"schema_version": 1, "name": "\\ud800"}', "surrogate"),
], ids=["deep", "long number", "lone surrogate"])
def test_manifest_json_that_breaks_the_parser_is_a_bundle_error(seeds: fuzz.Seeds, tmp_path: Path, text: str,
                                                                 words: str) -> None:
    bundle = fuzz.copy_seed(*seeds.get("manifest"), tmp_path / "case")
    _edit_json(bundle / MANIFEST_NAME, text)
    with pytest.raises(BundleError, match=words) as info:
        edgedl.Bundle.open(bundle)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("edit", [
    {"inputs": [{"name": "x", "dtype": "float32", "shape": "NCHW"}]},
    {"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3.5, None]}]},
    {"preprocess": {"input": "x", "width": 4.5, "height": 4}},
    {"preprocess": {"input": "x", "width": 4, "height": 4, "scale": "1/255"}},
    {"preprocess": {"input": "x", "width": 4, "height": 4, "std": [1, 0.5, float("nan")]}},
    {"preprocess": {"input": ["x"], "width": 4, "height": 4}},
    {"preprocess": {"input": "x", "width": 4, "height": 4, "line\nbreak": 1}},
], ids=["shape a string", "shape of floats", "float width", "string scale", "NaN std", "input a list",
        "key with a newline"])
def test_manifest_values_of_the_wrong_type_are_refused(seeds: fuzz.Seeds, tmp_path: Path, edit: dict) -> None:
    bundle = fuzz.copy_seed(*seeds.get("manifest"), tmp_path / "case")
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    _edit_json(bundle / MANIFEST_NAME, json.dumps({**data, **edit}))
    with pytest.raises(BundleError, match="malformed") as info:
        edgedl.Bundle.open(bundle)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("file", ["/dev/zero", "../outside.onnx", "x" * 5000, "bad\x00name"],
                         ids=["absolute", "link out", "name too long", "NUL"])
def test_variant_files_outside_the_bundle_or_unreadable_are_refused(seeds: fuzz.Seeds, tmp_path: Path,
                                                                    file: str) -> None:
    bundle = fuzz.copy_seed(*seeds.get("manifest"), tmp_path / "case")
    (tmp_path / "case" / "outside.onnx").write_bytes((bundle / "model.onnx").read_bytes())
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    if file.startswith("../"):  # the manifest refuses "..", so the escape goes through a link
        (bundle / "model.onnx").unlink()
        (bundle / "model.onnx").symlink_to(tmp_path / "case" / "outside.onnx")
    else:
        data["variants"]["fp32"]["file"] = file
    _edit_json(bundle / MANIFEST_NAME, json.dumps(data))
    with pytest.raises(BundleError) as info:
        edgedl.Bundle.open(bundle)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600


def test_calibration_cache_scales_tensorrt_cannot_use_are_refused(tmp_path: Path) -> None:
    from edgedl.loading.calib_cache import read_cache

    for line in ["images: 7fc00000", "images: 7f800000", "images: 00000000", "images: bf800000", ": 3c010204",
                 "images: 3c 01 02"]:
        (tmp_path / "c.cache").write_text(f"TRT-8601-EntropyCalibration2\n{line}\n")
        with pytest.raises(InputFileError, match="line 2 is malformed"):
            read_cache(tmp_path / "c.cache")


def test_engine_cache_never_reads_the_file_a_record_names(seeds: fuzz.Seeds, tmp_path: Path,
                                                          opened: list[str]) -> None:
    """A record's "plan" field once chose the file ``edgedl info`` hashed: any file on the disk."""
    folder = fuzz.copy_seed(*seeds.get("engine-record"), tmp_path / "case")
    secret = fuzz.write_secret(tmp_path)
    record_path = fuzz.resolve(folder, "RECORD")
    record = json.loads(record_path.read_text())
    _edit_json(record_path, json.dumps({**record, "plan": str(secret), "key": [1] * 3}))
    _edit_json(folder / "deep.json", "[" * 100_000 + "]" * 100_000)
    opened.clear()
    entries = EngineCache(folder).entries()
    assert [e["status"] for e in entries] == ["record unreadable", "ok"]
    assert not _touched(opened, secret)
    assert EngineCache(folder).load(engine_key(**fuzz.ENGINE_FIELDS)) is None, "the key no longer matches"


@pytest.mark.parametrize("size", [2**70, -1, "1028", None], ids=["2**70", "negative", "a string", "none"])
def test_plan_sizes_a_record_claims_never_break_the_read(seeds: fuzz.Seeds, tmp_path: Path, size: object) -> None:
    """A plan is read no further than its record's size: a record claiming 2**70 bytes once crashed the read
    (OverflowError, found by tools/fuzz_loaders.py); now the real plan behind it loads, other sizes are misses."""
    folder = fuzz.copy_seed(*seeds.get("engine-record"), tmp_path / "case")
    record_path = fuzz.resolve(folder, "RECORD")
    _edit_json(record_path, json.dumps({**json.loads(record_path.read_text()), "plan_bytes": size}))
    plan = EngineCache(folder).load(engine_key(**fuzz.ENGINE_FIELDS))
    assert plan == (fuzz.resolve(folder, "PLAN").read_bytes() if size == 2**70 else None)


def test_onnx_text_that_is_not_utf8_is_refused_before_it_reaches_the_manifest(tmp_path: Path) -> None:
    """Protobuf hands invalid UTF-8 over as bytes: convert once crashed writing the manifest (TypeError)."""
    data = fuzz.tiny_onnx().SerializeToString().replace(b"batch", b"bat\xe3h")
    (tmp_path / "m.onnx").write_bytes(data)
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "m.onnx")])
    assert result.exit_code == InputFileError.exit_code and "not valid UTF-8" in result.stderr, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("reader", ["import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "while True: pass"],
                         ids=["segfault", "endless loop"])
def test_hdf5_that_crashes_or_hangs_the_library_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   reader: str) -> None:
    """HDF5 segfaults and loops forever on some damaged files (found by fuzzing .h5); a child process takes that."""
    path = tmp_path / "m.h5"
    path.write_bytes(keras_export.HDF5_MAGIC + bytes(64))
    monkeypatch.setattr(keras_export, "_HDF5_READER", reader)
    monkeypatch.setattr(keras_export, "HDF5_READ_TIMEOUT_S", 0.5)
    with pytest.raises(InputFileError, match="crashed|did not finish") as info:
        keras_export.load_keras_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_zip_names_that_are_not_utf8_are_input_errors(tmp_path: Path) -> None:
    """zipfile raises UnicodeDecodeError listing a member whose name is flagged UTF-8 but is not (found fuzzing .pt)."""
    pytest.importorskip("torch")
    from edgedl.converters.pt2_guard import check_pt2_archive
    from edgedl.converters.torch_files import load_torch_file

    with zipfile.ZipFile(tmp_path / "m.pt", "w") as archive:
        archive.writestr("archive/dXta.pkl", b"x")
    data = bytearray((tmp_path / "m.pt").read_bytes().replace(b"dXta", b"d\xe9ta"))
    central = data.index(b"PK\x01\x02")
    data[central + 9] |= 0x08  # general purpose flag bit 11: "the name is UTF-8"
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(tmp_path / "m.pt")
    for load in (load_torch_file, check_pt2_archive):
        with pytest.raises(InputFileError) as exc_info:
            load(tmp_path / "m.pt")
        assert "\n" not in str(exc_info.value)


def test_pt2_model_json_that_breaks_the_guard_is_an_input_error(seeds: fuzz.Seeds, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgedl.converters.torch_files import load_torch_file

    texts = ["[" * 100_000 + "]" * 100_000, '{"range_constraints": [1, 2]}', '{"range_constraints": 7}']
    for number, text in enumerate(texts):
        path = _replace_member(seeds.get("pt2")[1], "models/model.json", text.encode(), tmp_path / f"{number}.pt2")
        with pytest.raises(InputFileError) as info:
            load_torch_file(path)
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------ external data

_OPENED: list[list[str]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # every open() and os.open() in Python, onnx's external data reader included


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """The paths this process opens while the test runs."""
    _OPENED.append([])
    yield _OPENED[-1]
    _OPENED.pop()


def _touched(paths: list[str], *files: Path) -> list[str]:
    """The opened paths that are one of ``files`` (the same inode: a hard link counts)."""
    inodes = {(f.stat().st_dev, f.stat().st_ino) for f in files if f.exists()}
    found = []
    for path in paths:
        try:
            info = os.stat(path)
        except (OSError, ValueError):
            continue
        if (info.st_dev, info.st_ino) in inodes:
            found.append(path)
    return found


def _model_reading(folder: Path, location: str, spans: bool = True) -> Path:
    """``folder/model.onnx``, its conv weights external at ``location``: with the offset and length they had in
    ``weights.data`` (left in the folder), or with none, so that they read the file to its end. The small
    tensors stay inline, as exporters leave them (ONNX Runtime needs the ReduceMean axes to load at all)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(fuzz.tiny_onnx(), str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.data", size_threshold=64)
    model = onnx.load_model(str(folder / "model.onnx"), load_external_data=False)
    for tensor in model.graph.initializer:
        if not tensor.external_data:
            continue
        kept = [(e.key, e.value) for e in tensor.external_data if spans or e.key not in ("offset", "length")]
        del tensor.external_data[:]
        for key, value in kept:
            tensor.external_data.add(key=key, value=location if key == "location" else value)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    return folder / "model.onnx"


def _secret_like(weights: Path, root: Path) -> Path:
    """The canary secret, exactly as long as the real weights, so only the location checks can stop it."""
    secret = root / "secret.data"
    secret.write_bytes((TOKEN * (weights.stat().st_size // len(TOKEN) + 1))[:weights.stat().st_size])
    return secret


def _trick(name: str, root: Path) -> tuple[Path, list[Path]]:
    """A model in ``root/model`` whose external data reaches the secret (or a file that never ends) by ``name``;
    returns it and the files no loader may open."""
    folder = root / "model"
    location = {"dotdot": "../secret.data", "dotdot-inside": "sub/../../secret.data",
                "absolute": str(root / "secret.data")}.get(name, "w.data")
    path = _model_reading(folder, location, spans=name != "big-file")
    secret = _secret_like(folder / "weights.data", root)
    (folder / "weights.data").unlink()
    if name == "symlink":
        (folder / "w.data").symlink_to("../secret.data")
    elif name == "hardlink":
        os.link(secret, folder / "w.data")
    elif name == "fifo":
        os.mkfifo(folder / "w.data")
    elif name == "dev-zero":
        (folder / "w.data").symlink_to("/dev/zero")
    elif name == "big-file":  # a file in the folder far larger than the weights: a video beside the model
        with open(folder / "w.data", "wb") as fh:
            fh.truncate(1 << 30)
    return path, [secret, folder / "w.data"]


TRICKS = ["dotdot", "dotdot-inside", "absolute", "symlink", "hardlink", "fifo", "dev-zero", "big-file"]


@pytest.mark.parametrize("trick", TRICKS)
def test_external_data_tricks_are_refused_before_anything_is_read(tmp_path: Path, opened: list[str],
                                                                  trick: str) -> None:
    path, forbidden = _trick(trick, tmp_path)
    opened.clear()  # making the trick wrote the secret
    with pytest.raises(InputFileError) as info:  # a FIFO opened for reading would block: the time limit catches it
        with fuzz.time_limit(5):
            onnx_load.load_onnx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, UnsafeFileError) == (trick not in ("fifo", "big-file")), str(info.value)
    assert not _touched(opened, *forbidden), "a forbidden file was opened before the refusal"


def _scan(root: Path, skip: list[Path]) -> list[Path]:
    """Regular files under ``root`` (not ``skip``, nor hard links to it) that contain the canary token."""
    inodes = {(f.stat().st_dev, f.stat().st_ino) for f in skip}
    leaked = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        info = path.stat()
        if (info.st_dev, info.st_ino) not in inodes and TOKEN in path.read_bytes():
            leaked.append(path)
    return leaked


def _bundle_reading(seeds: fuzz.Seeds, model: Path, root: Path) -> Path:
    """A copy of the seed bundle whose FP32 file is ``model`` (its external data trick beside it), hash updated:
    what an attacker who ships a bundle can write."""
    bundle = Path(shutil.copytree(seeds.get("manifest")[1], root / "b.edgedl"))
    for item in model.parent.iterdir():
        if item.name != "model.onnx":
            if item.is_symlink():
                (bundle / item.name).symlink_to(os.readlink(item))
            elif item.is_fifo():
                os.mkfifo(bundle / item.name)
            elif item.stat().st_nlink > 1:
                os.link(item, bundle / item.name)
            else:
                shutil.copy(item, bundle / item.name)
    shutil.copy(model, bundle / "model.onnx")
    data = json.loads((bundle / MANIFEST_NAME).read_text())
    data["variants"]["fp32"]["sha256"] = sha256_file(bundle / "model.onnx")
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))
    return bundle


@pytest.mark.parametrize("trick", [t for t in TRICKS if t not in ("fifo", "dev-zero", "big-file")])
def test_canary_secret_never_reaches_any_output(seeds: fuzz.Seeds, tmp_path: Path, trick: str) -> None:
    """Load, ``edgedl convert`` and ``edgedl info`` on a model, and on a shipped bundle, whose weights point at a
    secret: all refuse, and no output or message holds the secret's token. (ONNX Runtime alone, given the
    bundle, refuses the first four tricks but loads a hard-linked secret as the weights.)"""
    path, forbidden = _trick(trick, tmp_path)
    runner = CliRunner()
    with pytest.raises(UnsafeFileError) as loaded:
        edgedl.load(path, backend="onnxruntime")
    (tmp_path / "out").mkdir()
    converted = runner.invoke(main, ["convert", str(path), "-o", str(tmp_path / "out" / "m.edgedl")])
    bundle = _bundle_reading(seeds, path, tmp_path)
    shown = runner.invoke(main, ["info", str(bundle)])
    with pytest.raises(UnsafeFileError) as loaded_bundle:
        edgedl.load(bundle, backend="onnxruntime", precision="fp32")
    assert converted.exit_code == shown.exit_code == UnsafeFileError.exit_code, converted.output + shown.output
    texts = [str(loaded.value), converted.output, shown.output, str(loaded_bundle.value)]
    assert not any(TOKEN.decode() in text for text in texts)
    assert not _scan(tmp_path, [forbidden[0]]), "the secret was copied into a file"


def test_the_canary_scan_finds_a_secret_that_does_get_in(tmp_path: Path) -> None:
    """The control: weights that really hold the token (a legitimate .data file) do show up in the bundle."""
    path = _model_reading(tmp_path / "model", "weights.data")
    secret = _secret_like(tmp_path / "model" / "weights.data", tmp_path)
    shutil.copy(secret, tmp_path / "model" / "weights.data")
    converted = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "m.edgedl")])
    assert converted.exit_code == 0, converted.output
    assert tmp_path / "m.edgedl" / "model.onnx" in _scan(tmp_path, [secret])


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_convert_writes_nothing_outside_its_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An INT8 + TensorRT conversion (temporary files, staging folder) leaves only the bundle behind."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "tiny.onnx").write_bytes(fuzz.tiny_onnx().SerializeToString())
    np.save(source / "calib.npy", np.random.default_rng(0).random((12, 3, 4, 4), dtype=np.float32))
    (tmp_path / "out" / "deep").mkdir(parents=True)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = _tree(tmp_path)
    result = CliRunner().invoke(main, ["convert", str(source / "tiny.onnx"), "-o", str(tmp_path / "out" / "deep" / "m.edgedl"),
                                       "--int8", "--calib-data", str(source / "calib.npy"), "--calib-samples", "8",
                                       "--min-top1", "0", "--target", "all"])
    assert result.exit_code == 0, result.output
    added = _tree(tmp_path) - before
    assert added and all(p.startswith(os.path.join("out", "deep", "m.edgedl")) for p in added), sorted(added)
    assert not any(scratch.iterdir()), "temporary files were left behind"


# ------------------------------------------------------------------------------------------------ code in files

class Payload:
    """Unpickling this creates the marker file: proof that a payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (open, (self.marker, "w"))


def _ran(marker: Path) -> bool:
    """Whether the payload created the marker (and remove it, so the next step starts clean)."""
    found = marker.exists()
    marker.unlink(missing_ok=True)
    return found


def _replace_member(path: Path, suffix: str, data: bytes, target: Path) -> Path:
    """A copy of the zip at ``path`` with the member ending in ``suffix`` replaced (or added) by ``data``."""
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(target, "w") as out:
        names = archive.namelist()
        for info in archive.infolist():
            out.writestr(info, data if info.filename.endswith(suffix) else archive.read(info.filename))
        if not any(n.endswith(suffix) for n in names):
            out.writestr(names[0].split("/")[0] + "/" + suffix, data)
    return target


def _legacy_pt(seeds: fuzz.Seeds, tmp_path: Path, marker: Path) -> tuple[Path, Callable[[], object]]:
    import torch

    torch.save({"w": torch.ones(2), "x": Payload(marker)}, tmp_path / "model.pth", _use_new_zipfile_serialization=False)
    return tmp_path / "model.pth", lambda: torch.load(tmp_path / "model.pth", weights_only=False)


def _torchscript_pickle(seeds: fuzz.Seeds, tmp_path: Path, marker: Path) -> tuple[Path, Callable[[], object]]:
    payload = pickle.dumps(Payload(marker), protocol=2)
    path = _replace_member(seeds.get("torchscript")[1], "/data.pkl", payload, tmp_path / "model.ts")
    return path, lambda: pickle.loads(payload)


def _pt2_sample_inputs(seeds: fuzz.Seeds, tmp_path: Path, marker: Path) -> tuple[Path, Callable[[], object]]:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    path = _replace_member(seeds.get("pt2")[1], "sample_inputs/model.pt", buffer.getvalue(), tmp_path / "model.pt2")
    return path, lambda: torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)


def _pt2_custom_object(seeds: fuzz.Seeds, tmp_path: Path, marker: Path) -> tuple[Path, Callable[[], object]]:
    payload = pickle.dumps(Payload(marker))
    path = _replace_member(seeds.get("pt2")[1], "data/constants/custom_obj_0", payload, tmp_path / "model.pt2")
    return path, lambda: pickle.loads(payload)


@pytest.mark.parametrize("make", [_legacy_pt, _torchscript_pickle, _pt2_sample_inputs, _pt2_custom_object],
                         ids=["legacy torch.save", "TorchScript data.pkl", "pt2 sample inputs", "pt2 custom object"])
def test_pickle_payloads_are_refused_and_never_run(seeds: fuzz.Seeds, tmp_path: Path, make) -> None:
    pytest.importorskip("torch")
    marker = tmp_path / "MARKER"
    path, unsafe_load = make(seeds, tmp_path, marker)
    unsafe_load()
    assert _ran(marker), "control: loading it without weights_only runs the payload"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(main, ["convert", str(path)])
    assert result.exit_code in (InputFileError.exit_code, UnsafeFileError.exit_code), result.output
    assert len(result.stderr.strip().splitlines()) == 1 and path.name in result.stderr, result.stderr
    assert not _ran(marker), "the payload ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs on another backend in this process")
    return keras


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lambda_code_is_refused_and_never_runs(keras, tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "MARKER"
    code = eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t * 2)[1]")  # marshalled into the file by Keras
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Lambda(code, name="doubler")(inputs)).save(tmp_path / f"lam{suffix}")
    _ran(marker)  # building the model called it once
    keras.saving.load_model(tmp_path / f"lam{suffix}", safe_mode=False)
    assert _ran(marker), "control: unsafe loading runs the lambda"
    with pytest.raises(UnsafeFileError, match="'doubler'"):
        edgedl.convert(tmp_path / f"lam{suffix}", tmp_path / "out.edgedl")
    assert not _ran(marker) and not (tmp_path / "out.edgedl").exists()


def test_keras_config_naming_a_foreign_module_never_imports_it(keras, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer whose config names a module outside Keras: importing that module would run its code."""
    marker = tmp_path / "MARKER"
    (tmp_path / "evil_payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("evil_payload")
    assert _ran(marker), "control: importing the module runs the payload"
    monkeypatch.delitem(sys.modules, "evil_payload")
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs)).save(tmp_path / "m.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))
    config["config"]["layers"][1].update({"module": "evil_payload", "class_name": "Evil", "registered_name": "Evil"})
    path = _replace_member(tmp_path / "m.keras", "config.json", json.dumps(config).encode(), tmp_path / "evil.keras")
    with pytest.raises(InputFileError) as info:
        edgedl.convert(path, tmp_path / "out.edgedl")
    assert "evil.keras" in str(info.value) and "\n" not in str(info.value)
    assert not _ran(marker) and "evil_payload" not in sys.modules


# ------------------------------------------------------------------------------------------------ dependency floors

def test_extras_pin_versions_that_fix_the_known_deserialization_cves() -> None:
    """torch 2.6 made weights_only the default (CVE-2025-32434) and 2.10 fixed the weights-only unpickler;
    keras 3.12.1 fixed the safe_mode bypasses (CVE-2025-1550, -8747, -9905, -9906) and 3.13.0-3.13.2 miss
    CVE-2026-1462's fix; onnx 1.16 fixed external-data path traversal (CVE-2024-27318, -27319), 1.16.2 the rest."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    required = {(group, Requirement(r).name): Requirement(r).specifier for group, rs in groups.items() for r in rs}
    vulnerable = {"torch": ["2.5.1", "2.6.0", "2.9.1"], "keras": ["3.8.0", "3.11.2", "3.12.0", "3.13.0", "3.13.2"],
                  "onnx": ["1.15.0", "1.16.1"]}
    fixed = {"torch": "2.10.0", "keras": "3.12.1", "onnx": "1.16.2"}
    where = {"torch": ["torch", "keras"], "keras": ["keras"], "onnx": [""]}
    for package, groups_needing in where.items():
        for group in groups_needing:
            specifier = required[(group, package)]
            assert specifier.contains(fixed[package]), (group, package, str(specifier))
            assert not any(specifier.contains(v) for v in vulnerable[package]), (group, package, str(specifier))
    from edgedl.converters.torch_files import MIN_TORCH

    assert MIN_TORCH >= (2, 10), "the runtime check agrees with the extra"
