"""ONNX Runtime sessions tuned for CPU inference (shared by validation and the runtime)."""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Physical CPU cores (hyper-threads share execution units, so more threads rarely help)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            pairs = set()
            physical = core = None
            for line in fh:
                if line.startswith("physical id"):
                    physical = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    pairs.add((physical, core))
            if pairs:
                return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def cpu_session(model: str | Path | bytes, threads: int | None = None):  # -> onnxruntime.InferenceSession
    """An ONNX Runtime CPU session with all graph optimizations and one intra-op thread per core."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
