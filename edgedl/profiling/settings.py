"""What a profile is asked to do, checked before anything loads, so a bad option costs nothing and writes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgedl.errors import UsageError

#: Steady-state runs when neither ``runs`` nor ``duration_s`` is given: enough for a p99 to mean something.
DEFAULT_RUNS = 500
#: Inferences profiled per layer (apart from the latency runs, since profilers slow a runtime down).
LAYER_RUNS = 30


@dataclass
class ProfileSettings:
    """Options of ``edgedl profile``; :meth:`check` refuses contradictions with a one-line error.

    ``source`` runs the pipeline instead of the engine alone, as :class:`edgedl.pipeline.Pipeline` takes it: one
    URI, a list of them (each named by itself) or a dict of names to URIs. ``warmup`` and ``runs`` then count
    frames of each source.
    """

    bundle: Path
    backend: str = "auto"
    precision: str = "auto"
    batch: int | None = None
    shapes: dict[str, list[int]] = field(default_factory=dict)
    warmup: int = 10
    runs: int | None = None
    duration_s: float | None = None
    source: str | Sequence[str] | Mapping[str, str] | None = None
    per_layer: bool = False
    top: int = 10
    compare: list[tuple[str, str]] = field(default_factory=list)
    seed: int = 0
    device: int = 0
    interval_ms: int = 100
    telemetry: bool = True

    def check(self) -> ProfileSettings:
        """Raise UsageError for an impossible combination; fill in the default run count. Returns self."""
        if self.runs is not None and self.duration_s is not None:
            raise UsageError("--runs and --duration both say when to stop", fix="give one of them")
        if self.runs is not None and self.runs < 1:
            raise UsageError(f"--runs must be at least 1, got {self.runs}", fix="for example --runs 500")
        if self.duration_s is not None and not self.duration_s > 0:
            raise UsageError(f"--duration must be more than 0 seconds, got {self.duration_s:g}", fix="for example --duration 30")
        if self.warmup < 0:
            raise UsageError(f"--warmup must be 0 or more, got {self.warmup}", fix="for example --warmup 10")
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}", fix="for example --batch 4")
        if self.top < 1:
            raise UsageError(f"--top must be at least 1, got {self.top}", fix="for example --top 10")
        if not 10 <= self.interval_ms <= 10_000:
            raise UsageError(f"--interval-ms must be between 10 and 10000, got {self.interval_ms}", fix="for example 100")
        sources = self.sources  # a source given twice or none in a list: refused here, before anything loads
        if sources and self.compare:
            raise UsageError("--compare measures the engine alone; it cannot be combined with --source",
                             fix="profile the pipeline of one backend at a time")
        if sources and self.batch is not None:
            raise UsageError("--batch applies to engine-only profiles; a pipeline batches its sources' frames itself",
                             fix="leave --batch out with --source")
        if self.runs is None and self.duration_s is None:
            self.runs = DEFAULT_RUNS
        return self

    @property
    def mode(self) -> str:
        """``engine``, ``pipeline`` or ``compare``."""
        return "compare" if self.compare else "pipeline" if self.source is not None else "engine"

    @property
    def sources(self) -> dict[str, str]:
        """The pipeline's sources by name (empty for an engine-only profile)."""
        from edgedl.pipeline import named_sources

        return {} if self.source is None else named_sources(self.source)

    def _source_record(self) -> str | dict[str, str] | None:
        """One source named by its URI as that URI (as reports have always had it), several or named ones by name."""
        sources = self.sources
        if len(sources) == 1:
            ((name, uri),) = sources.items()
            if name == uri:
                return uri
        return sources or None

    def as_dict(self) -> dict[str, object]:
        """The settings a report records."""
        return {"backend": self.backend, "precision": self.precision, "batch": self.batch, "shapes": dict(self.shapes),
                "warmup": self.warmup, "runs": self.runs, "duration_s": self.duration_s, "source": self._source_record(),
                "per_layer": self.per_layer, "top": self.top, "compare": [f"{b}:{p}" for b, p in self.compare],
                "seed": self.seed, "device": self.device, "interval_ms": self.interval_ms, "telemetry": self.telemetry}


def parse_compare(text: str) -> list[tuple[str, str]]:
    """``onnxruntime:fp32,openvino:int8`` → [(backend, precision), …]: two or more distinct, known pairs."""
    from edgedl.runtimes.select import canonical, check_precision

    pairs = []
    for item in (part.strip() for part in text.split(",")):
        backend, sep, precision = item.partition(":")
        if not sep or not backend or not precision:
            raise UsageError(f"--compare item {item!r} is not BACKEND:PRECISION",
                             fix="write it like --compare onnxruntime:fp32,onnxruntime:int8")
        backend = backend.strip().lower()
        pairs.append((backend if backend == "auto" else canonical(backend), check_precision(precision.strip().lower())))
    if len(pairs) < 2 or len(set(pairs)) != len(pairs):
        raise UsageError(f"--compare {text!r} needs two or more different BACKEND:PRECISION pairs",
                         fix="for example --compare onnxruntime:fp32,onnxruntime:int8")
    return pairs
