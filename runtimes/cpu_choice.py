"""Which CPU runtime is faster for this model on this CPU: measured once, then remembered.

OpenVINO beats ONNX Runtime by a wide margin on some models (INT8 Q/DQ CNNs on
x86) and loses on others, so ``auto`` times both, interleaved, on the model's own
input shapes the first time a model loads on a machine. The result is recorded in
the bundle's ``engines/`` (or the user cache) under a key naming the CPU, the
thread count, both runtimes' versions and the variants timed; a later load reads
the record instead of timing again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgedl.fsutil import atomic_write_bytes
from edgedl.runtimes.base import Backend
from edgedl.runtimes.source import ModelSource, user_cache_dir
from edgedl.runtimes.tensorrt.engine_cache import writable
from edgedl.types import noise_samples

log = logging.getLogger("edgedl.runtimes")
MAX_ROUNDS, MIN_ROUNDS, BUDGET_S = 25, 4, 1.5


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    import onnxruntime

    versions = {"onnxruntime": onnxruntime.__version__}
    try:
        import openvino

        versions["openvino"] = openvino.__version__
    except ImportError:
        pass
    return versions


def time_backends(backends: list[Any], feeds: dict[str, np.ndarray], max_rounds: int = MAX_ROUNDS,
                  budget_s: float = BUDGET_S, warmup: int = 3, block: int = 4) -> list[float]:
    """Median milliseconds per call of each backend, in one run within a time budget.

    Each round runs every backend for a short block of calls, and the first call of a
    block is not counted: it pays for waking that runtime's threads after the other
    ran, which says more about the order of the loop than about the runtime.
    """
    for backend in backends:
        for _ in range(warmup):
            backend.infer(feeds)
    times: list[list[float]] = [[] for _ in backends]
    started = time.perf_counter()
    for round_ in range(max_rounds):
        for backend, bucket in zip(backends, times, strict=True):
            for call in range(block):
                t0 = time.perf_counter()
                backend.infer(feeds)
                if call:
                    bucket.append((time.perf_counter() - t0) * 1e3)
        if round_ + 1 >= MIN_ROUNDS and time.perf_counter() - started > budget_s:
            break
    return [float(np.median(t)) for t in times]


def _record_path(source: ModelSource, digest: str) -> Path:
    folder = source.engine_dir if writable(source.engine_dir) else user_cache_dir() / source.name
    return folder / f"cpu-choice-{digest[:16]}.json"


def faster(source: ModelSource, a: Backend, b: Backend) -> tuple[Backend, Backend, str]:
    """(winner, loser, why the loser was skipped), from a stored measurement or a new one."""
    key = {"cpu": cpu_name(), "threads": _threads(a, b), **_versions(),
           a.name: source.file(a.variant).sha256, b.name: source.file(b.variant).sha256,
           "inputs": {s.name: [str(d) for d in s.shape] for s in b.inputs}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    path = _record_path(source, digest)
    record: dict[str, Any] | None = None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(stored, dict) and stored.get("key") == key:
            record = stored
    except (OSError, ValueError):
        pass
    if record is None:
        ms = time_backends([a, b], noise_samples(b.inputs, 1, 0)[0])
        record = {"key": key, "ms": {a.name: ms[0], b.name: ms[1]}}
        try:
            atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode())
        except OSError as exc:
            log.info("could not record the CPU runtime timing in %s (%s)", path, exc)
    ms_a, ms_b = float(record["ms"][a.name]), float(record["ms"][b.name])
    winner, loser = (a, b) if ms_a <= ms_b else (b, a)
    fast, slow = min(ms_a, ms_b), max(ms_a, ms_b)
    note = (f"{winner.name} {winner.precision} measured faster on this CPU: {fast:.3f} ms vs {slow:.3f} ms "
            f"({slow / fast:.2f}x; record {path.name})")
    log.info("%s", note)
    return winner, loser, note


def _threads(*backends: Backend) -> list[Any]:
    return [b.describe().get("threads") or b.describe().get("intra_op_threads") for b in backends]
