"""ONNX Runtime sessions tuned for CPU inference (shared by validation and the runtime)."""

from __future__ import annotations

import os
from pathlib import Path

ALLOW_SPINNING = "session.intra_op.allow_spinning"
SPIN_DURATION = "session.intra_op.spin_duration_us"
# Whether idle intra-op workers spin or block is chosen per use, measured as tools/bench_spin.py does (2-core x86 VM):
# - Alone (model(x) in a loop) they spin, as in a default InferenceSession. Blocking, every parallel section
#   waits for a worker to wake: the 1x3x48x192 classifier (0.1 ms) ran 1.7-2.1x slower than a default session
#   while the machine was quiet, 1.13-1.16x under load. Spinning stops 1 ms after the last work (ONNX Runtime's
#   own limit was about 35 ms here), so what runs next (the next session in convert's timing, OpenVINO timed
#   beside it by auto) finds the cores free; ONNX Runtime versions without the key ignore it. On a loaded
#   machine (load average 8-13) spinning lost alone too: the demo detector ran 1.6-4x slower than blocking,
#   as a default session did.
# - Beside busy threads (a stream's capture, preprocessing and postprocessing) they block (Model.share_cpu):
#   a stream then ran 2.0-2.6x the frames per second with the demo detector, 1.1-2.8x with the classifier.
SPIN_US = 1000


def physical_cores() -> int:
    """Physical CPU cores this process may run on (hyper-threads share execution units, so more threads rarely help).

    Capped by the CPUs the process is allowed (a container or ``taskset`` limit), which /proc/cpuinfo ignores.
    """
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return min(_cores_in_cpuinfo(), allowed) if allowed else _cores_in_cpuinfo()


def _cores_in_cpuinfo() -> int:
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


def session_options(threads: int | None = None, fuse_qdq: bool = True,
                    spin: bool = True):  # -> onnxruntime.SessionOptions
    """Options every edgedl session shares: all graph optimizations, one intra-op thread per physical core,
    and the memory arena and pattern planner, so activations are reused between runs instead of allocated per call.

    ``fuse_qdq=False`` stops at the basic optimizations, which leave QuantizeLinear/DequantizeLinear pairs
    as written instead of fusing them into ONNX Runtime's own integer kernels.

    ``spin=True`` (a model run on its own, ``model(x)`` in a loop): idle intra-op workers spin for up to
    :data:`SPIN_US` before they block. ``spin=False`` (a model beside other busy threads, as in a stream):
    they block at once.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if fuse_qdq
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    options.intra_op_num_threads = threads or physical_cores()
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    options.add_session_config_entry(ALLOW_SPINNING, "1" if spin else "0")
    if spin:
        options.add_session_config_entry(SPIN_DURATION, str(SPIN_US))
    options.log_severity_level = 3
    return options


def cpu_session(model: str | Path | bytes, threads: int | None = None, fuse_qdq: bool = True,
                spin: bool = True):  # -> onnxruntime.InferenceSession
    """An ONNX Runtime CPU session with the shared tuned options (see :func:`session_options`)."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, session_options(threads, fuse_qdq, spin), providers=["CPUExecutionProvider"])
