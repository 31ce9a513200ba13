"""``edgedl compare``: the same inputs through two or more backends or precisions, per-output agreement.

The first run is the reference (ONNX Runtime FP32 unless the runs say otherwise);
every other run is checked against it with the same metrics ``convert`` validates
with (cosine, max/mean absolute error, top-1 agreement for classifiers) and,
when given, elementwise ``atol``/``rtol``. Latency is timed for all runs in one
interleaved loop, so their ratios can be trusted.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedl.errors import UsageError
from edgedl.model import Model, load
from edgedl.options import Gate
from edgedl.runtimes.source import ModelSource
from edgedl.types import Sample, noise_samples

log = logging.getLogger("edgedl.compare")


@dataclass
class RunResult:
    """One backend/precision: what loaded, its median latency, and its agreement with the reference."""

    label: str
    backend: str
    precision: str
    variant: str
    latency_ms: float
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """All runs; ``runs[0]`` is the reference."""

    runs: list[RunResult]
    samples: int
    data: str
    tolerances: dict[str, float | None]

    @property
    def passed(self) -> bool:
        """Whether every run agrees with the reference within the tolerances."""
        return not any(r.failures for r in self.runs)

    @property
    def failures(self) -> list[str]:
        """One line per broken tolerance: run, output, metric."""
        return [f"{r.label}: {f}" for r in self.runs for f in r.failures]


def _samples(source: ModelSource, data: str | Path | None, count: int, seed: int) -> tuple[list[Sample], str]:
    from edgedl.converters.calibration import from_images, image_files, load_calibration, shipped_photos_dir

    m = source.manifest
    spec = m.preprocess if m else None
    image = m.preprocess_input if m else None
    if data is not None:  # the same readers (and bad-input errors) as calibration data
        found = load_calibration(data, source.inputs, spec, image, samples=count, holdout=0, seed=seed)
        return found.calibration, f"{len(found.calibration)} samples from {data}"
    photos = shipped_photos_dir()
    if spec is not None and image is not None and len(source.inputs) == 1 and photos.is_dir() and image_files(photos):
        samples = from_images(photos, spec, image, count, 0, seed, augment_to=count).calibration
        return samples, "photographs shipped with edgedl (pass --data for your own frames)"
    return noise_samples(source.inputs, count, seed), "seeded normal noise (pass --data for real inputs)"


def _elementwise(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]], name: str,
                 atol: float, rtol: float) -> float:
    """The largest |c - r| - (atol + rtol * |r|) over all samples (<= 0 means within tolerance)."""
    worst = -np.inf
    for r, c in zip(reference, candidate, strict=True):
        excess = np.abs(c[name] - r[name]) - (atol + rtol * np.abs(r[name]))
        worst = max(worst, float(np.max(excess)) if excess.size else -np.inf)
    return worst


def compare(path: str | Path, backends: list[str] | None = None, precisions: list[str] | None = None,
            data: str | Path | None = None, samples: int = 8, gate: Gate | None = None,
            atol: float | None = None, rtol: float | None = None, rounds: int = 20, seed: int = 0,
            device: int = 0) -> Comparison:
    """Run ``backends`` x ``precisions`` on the same inputs and check each against the first run.

    Defaults: the ``auto`` backend at every precision the bundle has; a single run is
    compared against ONNX Runtime FP32. Runs that load the same backend and variant
    are run once. Each run must pass ``gate`` (default: a :class:`~edgedl.options.Gate` of defaults) against
    the first; a detector is judged by its detections where the inputs hold enough of them, as ``convert``
    judges it (see :func:`edgedl.convert`). Inputs that cannot support a judgement (too few confident
    detector anchors, no pixel a probability map says yes to) raise a
    :class:`~edgedl.errors.CalibrationError` asking for more ``data``, as ``convert`` does.
    """
    from edgedl.converters.validate import agreement, detection_decoder, passes, require_evidence
    from edgedl.runtimes.cpu_choice import time_backends

    if samples < 1:
        raise UsageError(f"--samples must be at least 1, got {samples}", fix="for example --samples 8")
    source = ModelSource.open(path)
    wanted = list(itertools.product(backends or ["auto"], precisions or (source.manifest.precisions if source.manifest
                                                                          else ["fp32"])))
    if len(wanted) == 1:
        wanted.insert(0, ("onnxruntime", "fp32"))
    models: list[tuple[str, Model]] = []
    seen: set[tuple[str, str]] = set()
    try:
        for backend, precision in wanted:
            model = load(source.path, backend=backend, precision=precision, device=device)
            if (model.backend, model.variant) in seen:
                log.info("skipping %s/%s: same as an earlier run (%s %s)", backend, precision, model.backend, model.variant)
                model.close()
                continue
            seen.add((model.backend, model.variant))
            models.append((f"{model.backend}/{model.precision}", model))
        if len(models) < 2:
            raise UsageError(f"nothing to compare: every run loads {models[0][0]}",
                             fix="pass --backends a,b or --precisions p,q that differ")
        inputs, described = _samples(source, data, samples, seed)
        outputs = [[{k: np.asarray(v, np.float64) for k, v in model(s).items()} for s in inputs] for _, model in models]
        times = time_backends([m for _, m in models], inputs[0], max_rounds=rounds, budget_s=30.0)
    finally:
        for _, model in models:
            model.close()
    gate = gate or Gate()
    classify = source.task == "classify"
    decode = detection_decoder(source.task, [(o.name, tuple(o.shape)) for o in source.manifest.outputs]
                               if source.manifest else [])
    require_evidence(outputs[0], classify, decode, "--data")
    results = []
    for index, ((label, model), ms) in enumerate(zip(models, times, strict=True)):
        result = RunResult(label, model.backend, model.precision, model.variant, ms)
        if index:
            result.outputs = agreement(outputs[0], outputs[index], classify, decode)
            ok, reason = passes(result.outputs, gate)
            if not ok:
                result.failures.append(reason)
            if atol is not None or rtol is not None:
                for name in result.outputs:
                    excess = _elementwise(outputs[0], outputs[index], name, atol or 0.0, rtol or 0.0)
                    result.outputs[name]["tolerance_excess"] = excess
                    if excess > 0:
                        result.failures.append(f"output {name}: |diff| exceeds atol {atol or 0} + rtol {rtol or 0} "
                                               f"x |ref| by {excess:.4g}")
        results.append(result)
    return Comparison(results, len(inputs), described, {**asdict(gate), "atol": atol, "rtol": rtol})


def report_table(result: Comparison) -> Any:
    """A rich table: one row per run and output, narrow enough for an 80-column terminal."""
    from rich.table import Table

    ref = result.runs[0]
    table = Table(title=f"Agreement with {ref.label} ({ref.variant}) on {result.samples} samples")
    for column in ("run (variant)", "output", "cosine", "worst", "max |err|", "top-1", "ms (× ref)", "result"):
        table.add_column(column, justify="left" if column in ("run (variant)", "output", "result") else "right")
    table.add_row(f"{ref.label} ({ref.variant})", "all", "1", "1", "0", "-", f"{ref.latency_ms:.3f}", "reference")
    for run in result.runs[1:]:
        for name, entry in run.outputs.items():
            top1 = entry.get("top1_agreement")
            failed = [f for f in run.failures if f.startswith(f"output {name}:")]
            table.add_row(f"{run.label} ({run.variant})", name, f"{entry['cosine']:.5f}", f"{entry['min_cosine']:.5f}",
                          f"{entry['max_abs_error']:.3g}", "-" if top1 is None else f"{top1:.3f}",
                          f"{run.latency_ms:.3f} ({ref.latency_ms / run.latency_ms:.2f}x)", "FAIL" if failed else "pass")
    return table
