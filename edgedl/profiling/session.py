"""Running a profile: load each model (cold start timed), time it, sample the device meanwhile, profile layers.

    outcome = run_profile(ProfileSettings(Path("model.edgedl"), runs=500).check())
    report = build_report(outcome)          # edgedl.profiling.report

Engine-only runs call the model on seeded random inputs; ``--compare`` loads several models side by side
and alternates them call by call; ``--source`` runs the streaming pipeline over one or more sources and times
each frame's stages, noting which source it came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgedl.errors import UsageError
from edgedl.profiling.inputs import profile_inputs, resolve_shapes
from edgedl.profiling.layers import LayerProfile
from edgedl.profiling.settings import LAYER_RUNS, ProfileSettings
from edgedl.profiling.telemetry import TelemetrySample
from edgedl.profiling.timing import ModelTimer, Phases, measure

Progress = Callable[[str], None]


@dataclass
class LoadedModel:
    """A model ready to time, with its cold start: the load (engine build included) and the first call."""

    model: Any
    feeds: dict[str, Any]
    timer: ModelTimer
    load_ms: float
    first_run_ms: float


@dataclass
class FrameTiming:
    """One frame through the pipeline: when its result arrived (``time.monotonic()``), stage times, end-to-end latency,
    and the name of the source it came from."""

    done: float
    stages: dict[str, float]
    latency_ms: float
    source: str


@dataclass(frozen=True)
class FrameCounts:
    """What a source captured, what the pipeline processed of it, and what it dropped."""

    captured: int
    processed: int
    dropped: int

    @classmethod
    def of(cls, stats: Any) -> FrameCounts:
        """The counts of a :class:`~edgedl.pipeline_stats.PipelineStats`: a run's totals or one source's."""
        return cls(stats.captured, stats.processed, stats.dropped)


@dataclass
class PipelineRun:
    """The frames of a pipeline run, warm-up apart (each source's first ``warmup`` frames), the counts in total and per
    source (by name, with its URI in ``uris``), and the model calls by the number of frames they carried."""

    warmup: list[FrameTiming]
    steady: list[FrameTiming]
    total: FrameCounts
    uris: dict[str, str]
    counts: dict[str, FrameCounts]
    batch_sizes: dict[int, int]


@dataclass
class RunOutcome:
    """What one model produced: engine phases or pipeline frames, and per-layer times when asked."""

    loaded: LoadedModel
    description: dict[str, Any]
    phases: Phases | None = None
    pipeline: PipelineRun | None = None
    layers: LayerProfile | None = None


@dataclass
class ProfileOutcome:
    """Everything a report is built from."""

    settings: ProfileSettings
    shapes: dict[str, tuple[int, ...]]
    machine: dict[str, Any]
    software: dict[str, str]
    t0: float
    runs: list[RunOutcome] = field(default_factory=list)
    samples: list[TelemetrySample] = field(default_factory=list)
    telemetry_source: str | None = None
    telemetry_error: str | None = None

    @property
    def steady_window(self) -> tuple[float, float]:
        """``time.monotonic()`` bounds of the steady state (all models together when compared)."""
        if self.settings.mode == "pipeline":
            frames = self.runs[0].pipeline.steady if self.runs[0].pipeline else []
            return (frames[0].done - frames[0].latency_ms / 1e3, frames[-1].done) if frames else (self.t0, self.t0)
        steady = [r.phases.steady for r in self.runs if r.phases is not None and r.phases.steady.starts]
        if not steady:
            return self.t0, self.t0
        return min(m.starts[0] for m in steady), max(m.ended for m in steady)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def run_profile(settings: ProfileSettings, progress: Progress | None = None) -> ProfileOutcome:
    """Run the profile ``settings`` describe (call :meth:`ProfileSettings.check` first)."""
    from edgedl.profiling.machine import describe_machine, software_versions
    from edgedl.profiling.sampler import TelemetrySampler, default_source
    from edgedl.runtimes.source import ModelSource

    t0 = time.monotonic()
    # Bad input fails here, before anything loads: the bundle path, the shapes, the source URIs and their options.
    declared = ModelSource.open(settings.bundle, verify=False).inputs
    shapes = resolve_shapes(declared, settings.batch, settings.shapes)
    if settings.sources:
        from edgedl.sources.registry import reader_factory
        from edgedl.sources.uri import parse_source

        for uri in settings.sources.values():
            reader_factory(parse_source(uri))()  # an unopened reader: its options are checked, nothing opens
    outcome = ProfileOutcome(settings, shapes, describe_machine(), software_versions(), t0)
    sampler = TelemetrySampler(default_source(settings.interval_ms, settings.device)) if settings.telemetry else None
    if sampler is not None:
        outcome.telemetry_source = sampler.source.name
        sampler.start()
    loaded: list[LoadedModel] = []
    try:
        for backend, precision in settings.compare or [(settings.backend, settings.precision)]:
            _say(progress, f"loading {settings.bundle} on {backend} ({precision})")
            loaded.append(_load(settings, backend, precision, shapes))
            _refuse_twins(loaded, f"{backend}:{precision}")
        outcome.runs = [RunOutcome(item, item.model.describe()) for item in loaded]
        _measure(outcome, progress)
    finally:
        if sampler is not None:
            outcome.samples = sampler.stop()
            outcome.telemetry_error = sampler.error
        for item in loaded:
            item.model.close()
    return outcome


def _measure(outcome: ProfileOutcome, progress: Progress | None) -> None:
    """Time the loaded models (engine, alternating, or the pipeline), then profile their layers when asked."""
    from edgedl.profiling.layers import check_supported, profile_layers

    settings, runs = outcome.settings, outcome.runs
    if settings.per_layer:  # refuse an unprofilable backend now, not after the whole run
        for run in runs:
            check_supported(run.loaded.model)
    if settings.mode == "pipeline":
        _say(progress, f"streaming {', '.join(settings.sources)} through the pipeline")
        runs[0].pipeline = _stream(runs[0].loaded.model, settings)
    else:
        what = f"{settings.runs} runs" if settings.runs else f"{settings.duration_s:g} s"
        _say(progress, f"timing {len(runs)} model(s): {settings.warmup} warm-up runs, then {what}"
                       + (", alternating" if len(runs) > 1 else ""))
        phases = measure([run.loaded.timer for run in runs], settings.warmup, settings.runs, settings.duration_s)
        for run, phase in zip(runs, phases, strict=True):
            run.phases = phase
    if settings.per_layer:
        for run in runs:
            _say(progress, f"profiling layers of {run.loaded.model.backend} ({run.loaded.model.precision})")
            run.layers = profile_layers(run.loaded.model, run.loaded.feeds, LAYER_RUNS)


def _refuse_twins(loaded: list[LoadedModel], asked: str) -> None:
    """--compare items that load the same thing (``auto:fp32`` and ``onnxruntime:fp32``) would compare a model with itself."""
    last = loaded[-1].model
    for item in loaded[:-1]:
        if (item.model.backend, item.model.variant) == (last.backend, last.variant):
            raise UsageError(f"--compare item {asked} loads {last.backend}/{last.precision} (variant {last.variant}), "
                             "like an earlier item", fix="compare different backends or precisions")


def _load(settings: ProfileSettings, backend: str, precision: str, shapes: dict[str, tuple[int, ...]]) -> LoadedModel:
    from edgedl.model import load

    # Shapes matter only to TensorRT (the engine's optimization profile); pass them when the user chose them,
    # so a default profile measures the same engine an app loading the bundle gets.
    chosen = shapes if settings.batch is not None or settings.shapes else None
    started = time.perf_counter()
    model = load(settings.bundle, backend=backend, precision=precision, device=settings.device, shapes=chosen)
    load_ms = (time.perf_counter() - started) * 1e3
    try:
        feeds = profile_inputs(model.inputs, shapes, settings.seed)
        # The first call on the host clock: its lazy set-up (allocations, kernel selection) happens outside
        # any CUDA event the backend records.
        started = time.perf_counter()
        model(feeds)
        first_run_ms = (time.perf_counter() - started) * 1e3
    except BaseException:
        model.close()
        raise
    return LoadedModel(model, feeds, ModelTimer(model, feeds), load_ms, first_run_ms)


def _stream(model: Any, settings: ProfileSettings) -> PipelineRun:
    """Run the pipeline over the sources; each source's first ``warmup`` frames are warm-up, then ``runs`` frames of
    each source or ``duration_s`` of all of them."""
    from edgedl.pipeline import Pipeline

    sources = settings.sources
    frames: list[FrameTiming] = []

    def on_result(result: Any) -> None:
        frames.append(FrameTiming(time.monotonic(), dict(result.timings), float(result.latency_ms), result.source))

    limit = settings.warmup + settings.runs if settings.runs is not None else None
    pipeline = Pipeline(model, sources, on_result=on_result, max_frames=limit)
    pipeline.start()
    steady_began: float | None = None
    finished = False
    try:
        while not (finished := pipeline.join(timeout=0.05)):
            if settings.duration_s is None:
                continue
            # The clock starts once every source's warm-up could be in; a source that never opens does not hold it back.
            if steady_began is None and len(frames) >= settings.warmup * len(sources):
                steady_began = time.monotonic()
            if steady_began is not None and time.monotonic() - steady_began >= settings.duration_s:
                break
    finally:
        if not finished:  # stopped early (duration reached, an error, Ctrl-C): close the sources and threads now
            pipeline.stop()
    seen: dict[str, int] = {}
    warmup, steady = [], []
    for frame in frames:
        seen[frame.source] = seen.get(frame.source, 0) + 1
        (warmup if seen[frame.source] <= settings.warmup else steady).append(frame)
    if not steady:
        raise UsageError(f"{', '.join(sources)} gave {len(frames)} frame(s), all of them warm-up",
                         fix="lower --warmup or use a longer source")
    stats = pipeline.stats
    return PipelineRun(warmup, steady, FrameCounts.of(stats), dict(sources),
                       {name: FrameCounts.of(stats.source(name)) for name in sources}, dict(sorted(stats.batch_sizes.items())))
