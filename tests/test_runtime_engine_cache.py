"""The engine cache: keys, records, atomic writes, and one build when two processes miss at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from child_processes import child_process
from fake_tensorrt import tiny_bundle

from edgedl.errors import BundleError
from edgedl.runtimes.tensorrt.engine_cache import EngineCache, engine_key, get_or_build

TESTS = Path(__file__).resolve().parent


def test_key_id_names_variant_and_precision_and_changes_with_any_field() -> None:
    a = engine_key(variant="int8-trt", precision="int8", tensorrt="10.3.0", gpu="Orin", dla_core=None)
    b = engine_key(variant="int8-trt", precision="int8", tensorrt="10.3.0", gpu="Orin", dla_core=0)
    assert a.id.startswith("int8-trt-int8-") and len(a.id.rsplit("-", 1)[1]) == 16
    assert a.id != b.id and a.id == engine_key(**{k: v for k, v in a.fields.items() if k != "format"}).id


def test_store_then_load_checks_record_and_hash(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    key = engine_key(variant="fp32", precision="fp16", tensorrt="8.6.2")
    assert cache.load(key) is None
    plan = cache.store(key, b"PLAN" * 100, {"build_seconds": 1.5})
    assert plan.read_bytes() == b"PLAN" * 100, "the plan is stored untouched"
    record = json.loads(plan.with_suffix(".json").read_text())
    assert record["key"] == key.fields and record["build_seconds"] == 1.5 and record["plan_bytes"] == 400
    assert cache.load(key) == b"PLAN" * 100
    assert sorted(p.name for p in cache.folder.iterdir()) == [f"{key.id}.json", f"{key.id}.plan"], "no temp files left"
    plan.write_bytes(b"PLAN" * 99)
    assert cache.load(key) is None
    assert [e["status"] for e in cache.entries()] == ["plan altered"]
    plan.unlink()
    assert [e["status"] for e in cache.entries()] == ["plan missing"]


def test_a_failed_write_leaves_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = EngineCache(tmp_path / "engines")
    key = engine_key(variant="fp32", precision="fp32")

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        cache.store(key, b"plan")
    monkeypatch.undo()
    assert cache.load(key) is None and not list(cache.folder.glob("*.json")) and not list(cache.folder.glob("*.tmp"))


def test_get_or_build_rebuilds_what_the_runtime_refuses(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = engine_key(variant="fp32", precision="fp32")
    cache.store(key, b"from another TensorRT")
    builds = []

    def build() -> tuple[bytes, dict[str, object]]:
        builds.append(1)
        return b"good plan", {}

    engine, built = get_or_build(cache, key, build, lambda plan: plan if plan == b"good plan" else None)
    assert (engine, built, len(builds)) == (b"good plan", True, 1)
    engine, built = get_or_build(cache, key, build, lambda plan: plan if plan == b"good plan" else None)
    assert (built, len(builds)) == (False, 1)
    with pytest.raises(BundleError, match="no usable engine cached"):
        get_or_build(EngineCache(tmp_path / "empty"), key, build, lambda plan: plan, allow_build=False)


CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
import fake_tensorrt
fake_tensorrt.install("10.3.0")
import numpy as np, edgedl
with edgedl.load({bundle!r}, backend="tensorrt", precision="fp32", progress=False) as model:
    out = model(np.ones((1, 3, 16, 16), np.float32))["logits"]
    print(json.dumps({{"built": model.describe()["built_now"], "out": out.tolist()}}))
"""


def test_two_processes_missing_at_once_build_the_engine_once(tmp_path: Path) -> None:
    bundle = tiny_bundle(tmp_path)
    log = tmp_path / "builds.log"
    env = {**os.environ, "FAKE_TRT_BUILD_SECONDS": "1.5", "FAKE_TRT_BUILD_LOG": str(log)}
    code = CHILD.format(tests=str(TESTS), bundle=str(bundle))
    results = []
    with ExitStack() as stack:
        children = [stack.enter_context(child_process([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                                      stderr=subprocess.PIPE)) for _ in range(2)]
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    assert len(log.read_text().splitlines()) == 1, "the second process waited and took the first one's engine"
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["out"] == results[1]["out"]
    shutil.rmtree(bundle / "engines")
