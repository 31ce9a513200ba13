"""The profile report: one JSON document (schema in :mod:`edgedl.profiling.schema`) that every output is drawn from.

The terminal tables, the markdown, the plot and ``--diff`` all read this dict, so a report saved
with ``--json`` can be shown, plotted or compared later exactly as it was at the end of the run.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from edgedl.profiling.analysis import energy, few_runs_warning, setup_warnings, throttle_windows, window_warnings
from edgedl.profiling.schema import SCHEMA_NAME, SCHEMA_VERSION
from edgedl.profiling.session import FrameCounts, FrameTiming, PipelineRun, ProfileOutcome, RunOutcome
from edgedl.profiling.stats import summarize, thin
from edgedl.profiling.telemetry import TelemetrySample

#: Latency samples kept in a report (evenly spread over the run); statistics use every sample.
SAMPLES_KEPT = 5000
#: The order stages are shown in; a stage the pipeline reports beyond these comes after them.
STAGE_ORDER = ("capture", "upload", "preprocess", "infer", "download", "postprocess", "sink")
#: Time a frame spent neither in a timed stage nor anywhere measured: queues and the wait for the next stage.
QUEUED = "queued"


def build_report(outcome: ProfileOutcome) -> dict[str, Any]:
    """The report of a finished profile."""
    settings, t0 = outcome.settings, outcome.t0
    start, end = outcome.steady_window
    batch = next(iter(outcome.shapes.values()))[0] if outcome.shapes else 1
    single = len(outcome.runs) == 1
    runs = [_run_entry(run, outcome, batch, single) for run in outcome.runs]
    if len(runs) > 1:
        first = runs[0]["latency"]["median"]
        for entry in runs:
            entry["ratio_vs_first"] = first / entry["latency"]["median"] if entry["latency"]["median"] > 0 else None
    windows = throttle_windows(outcome.samples, start, end) if outcome.samples else []
    warnings = setup_warnings(outcome.machine)
    for entry in runs:
        warnings += few_runs_warning(entry["label"], entry["latency"]["count"])
    warnings += window_warnings(windows, t0)
    if outcome.telemetry_error:
        warnings.append(f"telemetry stopped early: {outcome.telemetry_error}")
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": settings.mode, "bundle": str(settings.bundle), "batch": batch,
        "input_shapes": {name: list(shape) for name, shape in outcome.shapes.items()},
        "machine": outcome.machine, "software": outcome.software, "settings": settings.as_dict(),
        "steady_window_s": [round(start - t0, 4), round(end - t0, 4)],
        "runs": runs,
        "telemetry": {"source": outcome.telemetry_source, "interval_ms": settings.interval_ms,
                      "summary": _telemetry_summary(outcome.samples, start, end),
                      "windows": [w.as_dict(t0) for w in windows],
                      "samples": [s.as_dict(t0) for s in outcome.samples]},
        "warnings": warnings,
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _run_entry(run: RunOutcome, outcome: ProfileOutcome, batch: int, single: bool) -> dict[str, Any]:
    model, loaded, t0 = run.loaded.model, run.loaded, outcome.t0
    entry: dict[str, Any] = {
        "label": f"{model.backend}/{model.precision}", "backend": model.backend, "precision": model.precision,
        "variant": model.variant, "clock": loaded.timer.clock, "details": _jsonable(run.description),
        "cold_start": {"load_ms": loaded.load_ms, "first_run_ms": loaded.first_run_ms,
                       "engine_built": run.description.get("built_now")},
        "stages": None, "frames": None, "sources": None, "batch_sizes": None, "energy": None, "ratio_vs_first": None,
        "layers": None if run.layers is None else run.layers.as_dict(outcome.settings.top),
    }
    if run.pipeline is not None:
        pipeline = run.pipeline
        entry.update(_pipeline_entry(pipeline.warmup, pipeline.steady, t0))
        entry["frames"] = _frames(pipeline.total, pipeline.warmup, pipeline.steady)
        entry["sources"] = _source_entries(pipeline)
        entry["batch_sizes"] = {str(size): calls for size, calls in pipeline.batch_sizes.items()}
        count = len(pipeline.steady)
    else:
        assert run.phases is not None
        warm, steady = run.phases.warmup, run.phases.steady
        entry["warmup"] = summarize(warm.samples_ms).as_dict() if warm.samples_ms else None
        entry["latency"] = summarize(steady.samples_ms).as_dict()
        entry["throughput"] = {"inferences_per_s": steady.calls_per_s, "items_per_s": steady.calls_per_s * batch}
        entry["samples"] = {"total": len(steady.samples_ms), "ms": thin(steady.samples_ms, SAMPLES_KEPT),
                            "t_s": [round(t - t0, 5) for t in thin(steady.starts, SAMPLES_KEPT)]}
        count = len(steady.samples_ms)
    if single:  # alternating models share the power drawn, so energy is only attributed to a model run alone
        start, end = outcome.steady_window
        entry["energy"] = energy(outcome.samples, start, end, count, batch)
    return entry


def _pipeline_entry(warmup: list[FrameTiming], steady: list[FrameTiming], t0: float) -> dict[str, Any]:
    latencies = [f.latency_ms for f in steady]
    names = sorted({name for f in steady for name in f.stages}, key=lambda n: (STAGE_ORDER.index(n)
                                                                                 if n in STAGE_ORDER else len(STAGE_ORDER), n))
    stages = {name: summarize([f.stages[name] for f in steady if name in f.stages]).as_dict() for name in names}
    stages[QUEUED] = summarize([max(0.0, f.latency_ms - sum(f.stages.values())) for f in steady]).as_dict()
    fps = _fps(steady)
    return {"warmup": summarize([f.latency_ms for f in warmup]).as_dict() if warmup else None,
            "latency": summarize(latencies).as_dict(), "stages": stages,
            "throughput": {"inferences_per_s": fps, "items_per_s": fps},
            "samples": {"total": len(latencies), "ms": thin(latencies, SAMPLES_KEPT),
                        "t_s": [round(f.done - t0, 5) for f in thin(steady, SAMPLES_KEPT)]}}


def _source_entries(pipeline: PipelineRun) -> dict[str, Any]:
    """Each source's URI, frame counts, latency and frames per second: the run's figures split by where frames came from."""
    entries = {}
    for name, uri in pipeline.uris.items():
        warmup = [f for f in pipeline.warmup if f.source == name]
        steady = [f for f in pipeline.steady if f.source == name]
        entries[name] = {"uri": uri, "frames": _frames(pipeline.counts[name], warmup, steady),
                         "warmup": summarize([f.latency_ms for f in warmup]).as_dict() if warmup else None,
                         "latency": summarize([f.latency_ms for f in steady]).as_dict() if steady else None,
                         "fps": _fps(steady)}
    return entries


def _frames(counts: FrameCounts, warmup: list[FrameTiming], steady: list[FrameTiming]) -> dict[str, int]:
    return {"captured": counts.captured, "processed": counts.processed, "dropped": counts.dropped, "warmup": len(warmup),
            "steady": len(steady)}


def _fps(steady: list[FrameTiming]) -> float:
    """Results per second between the first and the last steady-state result."""
    span = steady[-1].done - steady[0].done if steady else 0.0
    return (len(steady) - 1) / span if span > 0 else 0.0


def _range(values: list[float]) -> list[float] | None:
    return [min(values), max(values)] if values else None


def _telemetry_summary(samples: list[TelemetrySample], start: float, end: float) -> dict[str, Any]:
    """Ranges and means over the steady state: what the clocks, loads and temperatures did while it was measured."""
    during = [s for s in samples if start <= s.t <= end] or samples
    loads = [load for s in during if (load := s.cpu_load_mean) is not None]
    gpu_loads = [s.gpu_load for s in during if s.gpu_load is not None]
    temps = [c for s in during if (c := s.hottest_c) is not None]
    power = [s.total_mw for s in during if s.total_mw is not None]
    return {"samples_in_steady_state": len([s for s in samples if start <= s.t <= end]),
            "cpu_mhz": _range([m for s in during if (m := s.cpu_max_mhz) is not None]),
            "gpu_mhz": _range([s.gpu_mhz for s in during if s.gpu_mhz is not None]),
            "emc_mhz": _range([s.emc_mhz for s in during if s.emc_mhz is not None]),
            "cpu_load_mean": sum(loads) / len(loads) if loads else None,
            "gpu_load_mean": sum(gpu_loads) / len(gpu_loads) if gpu_loads else None,
            "peak_temperature_c": max(temps) if temps else None,
            "power_w": None if not power else [min(power) / 1e3, max(power) / 1e3]}
