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


def session_options(threads: int | None = None, fuse_qdq: bool = True):  # -> onnxruntime.SessionOptions
    """Options every edgedl session shares: all graph optimizations, one intra-op thread per physical core,
    and the memory arena and pattern planner, so activations are reused between runs instead of allocated per call.

    ``fuse_qdq=False`` stops at the basic optimizations, which leave QuantizeLinear/DequantizeLinear pairs
    as written instead of fusing them into ONNX Runtime's own integer kernels.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fuse_qdq
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    options.intra_op_num_threads = threads or physical_cores()
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    # Idle workers block instead of spinning: on an edge device the cores are shared with other models,
    # the camera pipeline and the app. Measured on 2 cores: a spinning session slowed an OpenVINO model
    # in the same process 4-6x, while its own latency was the same within noise either way.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def cpu_session(model: str | Path | bytes, threads: int | None = None,
                fuse_qdq: bool = True):  # -> onnxruntime.InferenceSession
    """An ONNX Runtime CPU session with the shared tuned options (see :func:`session_options` for ``fuse_qdq``)."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, session_options(threads, fuse_qdq), providers=["CPUExecutionProvider"])
