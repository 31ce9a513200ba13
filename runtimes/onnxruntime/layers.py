"""ONNX Runtime per-node times from its profiler's JSON trace.

A separate session is built from the same model file with the same tuned options the
runtime uses (``ort_session.session_options``), plus profiling, so the runtime itself is
untouched. The trace holds one ``model_run`` event per run and one ``<node>_kernel_time``
event per node executed (times in microseconds); the first run, which allocates, is left out.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgedl.profiling.layers import LayerProfile, aggregate

KERNEL_SUFFIX = "_kernel_time"


def ort_layers(model_file: Path, feeds: dict[str, Any], runs: int, threads: int | None = None,
               fuse_qdq: bool = True) -> LayerProfile:
    """Profile ``runs`` inferences (after one uncounted run) in a profiling session of ``model_file``."""
    import onnxruntime as ort

    from edgedl.loading.ort_session import session_options

    options = session_options(threads, fuse_qdq)
    with tempfile.TemporaryDirectory(prefix="edgedl-ort-profile-") as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "trace")
        session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, feeds)
        trace = Path(session.end_profiling()).read_text(encoding="utf-8")
    return aggregate_trace(json.loads(trace))


def aggregate_trace(events: list[dict[str, Any]]) -> LayerProfile:
    """Per-node mean times from an ONNX Runtime trace, leaving out the first ``model_run``."""
    run_spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                       if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(run_spans) < 2:
        raise ValueError("the trace holds fewer than two runs")
    first_run_end = run_spans[0][1]
    return aggregate("onnxruntime-profiler", len(run_spans) - 1, _node_times(events, first_run_end))


def _node_times(events: list[dict[str, Any]], after_us: float) -> Iterator[tuple[str, str, float]]:
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") == "Node" and name.endswith(KERNEL_SUFFIX) and event["ts"] >= after_us:
            yield name[: -len(KERNEL_SUFFIX)], str(event.get("args", {}).get("op_name", "")), event["dur"] / 1e3
