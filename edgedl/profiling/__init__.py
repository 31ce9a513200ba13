"""``edgedl profile``: how fast a model runs here, and why.

    report = edgedl.profiling.profile("model.edgedl", runs=1000)     # the JSON report, as a dict
    print(report["runs"][0]["latency"]["p99"])

The pieces: :mod:`~edgedl.profiling.settings` (what to run), :mod:`~edgedl.profiling.session`
(loading, timing, the pipeline, per-layer profilers, telemetry sampled meanwhile),
:mod:`~edgedl.profiling.report` and :mod:`~edgedl.profiling.schema` (the versioned JSON report),
and the views of a report: :mod:`~edgedl.profiling.render` (terminal), :mod:`~edgedl.profiling.markdown`,
:mod:`~edgedl.profiling.plot` (PNG) and :mod:`~edgedl.profiling.diff`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedl.profiling.diff import diff_reports
from edgedl.profiling.report import build_report
from edgedl.profiling.schema import REPORT_SCHEMA, SCHEMA_VERSION, load_report, schema_errors
from edgedl.profiling.session import run_profile
from edgedl.profiling.settings import ProfileSettings
from edgedl.profiling.stats import LatencyStats, summarize

__all__ = ["REPORT_SCHEMA", "SCHEMA_VERSION", "LatencyStats", "ProfileSettings", "build_report", "diff_reports",
           "load_report", "profile", "run_profile", "schema_errors", "summarize"]


def profile(bundle: str | Path, **options: Any) -> dict[str, Any]:
    """Profile ``bundle`` and return the report; ``options`` are :class:`ProfileSettings` fields
    (``backend``, ``precision``, ``batch``, ``runs``, ``duration_s``, ``source``, ``per_layer``, ``compare``…)."""
    return build_report(run_profile(ProfileSettings(Path(bundle), **options).check()))
