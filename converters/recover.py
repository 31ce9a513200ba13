"""Recover INT8 accuracy before giving layers up to float.

When a quantized candidate fails the accuracy gate, keeping its most damaged layers in float (the
repair in :mod:`edgedl.converters.int8`) costs speed. First, the techniques of the quantization
literature try to make those layers quantize well, cheapest first:

``equalize``  cross-layer equalization: channel ranges moved into the next conv's weights (:mod:`.equalize`)
``ranges``    each activation's range chosen by its measured error (:mod:`.ranges`)
``bias``      bias correction of the mean shift INT8 puts on conv outputs (:mod:`.bias_correction`)
``adaround``  learned rounding of the weights the layers' outputs need most (:mod:`.adaround`; needs torch)

Each is tried on top of those kept so far and kept only when it brings the candidate closer to FP32
(:func:`~edgedl.converters.validate.shortfall`, the gate's own measures). Recovery does not stop at the
first candidate that passes: the gate is a floor judged on a few held-out samples, and a candidate that
only just passes it can lose more on other frames (on tools/hard_models.py's detector, a TensorRT
variant that passed with chosen ranges alone kept 0.979 of unseen confident class scores within 0.1,
and one with bias correction 0.999). What each technique bought is recorded, and the repair goes on
from the best recovered candidate if the gate still fails. All of it changes only the FP32 model the INT8 variant
is made from (FP32-equivalent for ``equalize``) and the ranges it is calibrated with; the bundle's
FP32 model stays as it was given.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import onnx

from edgedl.converters.int8 import Candidate, Evaluator
from edgedl.converters.quantize import Quantizer, Scheme
from edgedl.converters.validate import shortfall
from edgedl.errors import MissingDependencyError
from edgedl.types import Sample

log = logging.getLogger("edgedl.recover")

#: Techniques that leave the float function as it was (equalization is exact; ranges change only the INT8
#: side). Bias correction and learned rounding change float weights, which is right only for layers that are
#: quantized: a repair that keeps layers in float therefore starts from the last candidate made by these alone.
FLOAT_EXACT = ("equalize", "ranges")
#: Calibration samples each technique measures on: channel ranges, value samples, conv input means, patches.
_SAMPLES = {"equalize": 16, "ranges": 64, "bias": 16, "adaround": 8}


class _RangedQuantizer(Quantizer):
    """A :class:`Quantizer` of a recovered model whose activation ranges were chosen per tensor for one symmetry."""

    def __init__(self, fp32_path: Path, samples: list[Sample], method: str, workdir: Path, chosen: dict[bool, Any]) -> None:
        super().__init__(fp32_path, samples, method, workdir)
        self.chosen = chosen

    def ranges(self, symmetric: bool) -> Any:
        """The chosen ranges where there are some for ``symmetric``, else the calibrated ones."""
        return self.chosen[symmetric] if symmetric in self.chosen else super().ranges(symmetric)


@dataclass
class _State:
    """What recovery has kept so far: the model before bias correction, chosen ranges, whether biases are corrected."""

    model: onnx.ModelProto
    chosen: Any = None
    bias: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recovery:
    """One failed candidate's recovery: the evaluator and best candidate it ended with, and each technique's record."""

    evaluator: Evaluator
    candidate: Candidate
    steps: list[dict[str, Any]]


class _Trial:
    """Builds, quantizes and judges recovered models for one scheme."""

    def __init__(self, base: Evaluator, scheme: Scheme, made: dict[tuple[Any, ...], _State]) -> None:
        self.base, self.scheme, self.made = base, scheme, made
        self.symmetric = scheme.symmetric_activations
        self.samples = base.quantizer.reader.samples
        self.count = 0
        base.reference_for(scheme.target)  # FP32's own outputs, computed before any recovered model stands in for it

    def folder(self) -> Path:
        self.count += 1
        path = self.base.workdir / f"recover-{self.scheme.name}-{self.count}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def quantizer(self, model: onnx.ModelProto, chosen: Any = None, method: str | None = None) -> Quantizer:
        """A quantizer of ``model`` (calibrated by ``method``, the user's by default) or with ``chosen`` ranges."""
        folder = self.folder()
        path = folder / "fp32.onnx"
        onnx.save_model(model, str(path))
        return _RangedQuantizer(path, self.samples, method or self.base.quantizer.method, folder,
                                {} if chosen is None else {self.symmetric: chosen})

    def ranges(self, state: _State) -> Any:
        """The activation ranges ``state``'s model is quantized with."""
        return state.chosen if state.chosen is not None else self.quantizer(state.model).ranges(self.symmetric)

    def judge(self, state: _State) -> tuple[Evaluator, Candidate]:
        """Quantize ``state``'s model (biases corrected for its ranges when bias correction is kept) and judge it."""
        model, chosen = state.model, state.chosen
        if state.bias:
            from edgedl.converters.bias_correction import correct_biases

            chosen = self.ranges(state)
            model, largest = correct_biases(model, chosen, self.samples[:_SAMPLES["bias"]], self.symmetric)
            state.details["bias"] = {"largest_shift": round(largest, 6)}
        evaluator = Evaluator(**{f.name: getattr(self.base, f.name) for f in fields(Evaluator)})
        evaluator.fp32_model, evaluator.quantizer = model, self.quantizer(model, chosen)
        return evaluator, evaluator.check(self.scheme, [], f"recover{self.count}")

    def apply(self, technique: str, state: _State, kept: tuple[str, ...]) -> _State:
        """``state`` (the techniques ``kept`` so far) with ``technique`` added; made once per activation symmetry,
        since what a technique makes depends on the ranges' symmetry, not on the scheme."""
        key = (self.symmetric, kept, technique)
        if key not in self.made:
            self.made[key] = self._apply(technique, state)
        made = self.made[key]
        return _State(made.model, made.chosen, made.bias, dict(made.details))

    def _apply(self, technique: str, state: _State) -> _State:
        samples = self.samples[:_SAMPLES[technique]]
        if technique == "equalize":
            from edgedl.converters.equalize import equalize

            model, spread = equalize(state.model, samples)
            worst = max(spread.values(), default=1.0)
            return _State(model, state.chosen, state.bias,
                          {**state.details, technique: {"tensors": len(spread), "largest_spread_cut": round(worst, 2)}})
        if technique == "ranges":
            from edgedl.converters.ranges import choose_ranges, summary

            calibrated = self.quantizer(state.model, method="minmax").ranges(self.symmetric)
            chosen, choices = choose_ranges(state.model, calibrated, samples, self.symmetric)
            return _State(state.model, chosen, state.bias, {**state.details, technique: {"methods": summary(choices)}})
        if technique == "bias":
            return _State(state.model, state.chosen, True, dict(state.details))
        from edgedl.converters.adaround import adaround

        model, gains = adaround(state.model, self.ranges(state), samples, self.symmetric)
        detail = {"layers": len(gains), "largest_error_cut": round(max((b / max(a, 1e-30) for b, a in gains.values()),
                                                                       default=1.0), 2)}
        return _State(model, state.chosen, state.bias, {**state.details, technique: detail})


def recover(evaluator: Evaluator, failed: Candidate, techniques: tuple[str, ...],
            made: dict[tuple[Any, ...], Any] | None = None) -> Recovery:
    """Try ``techniques`` (in the order of :data:`~edgedl.vocabulary.RECOVERY_TECHNIQUES`) on ``failed``'s scheme.

    Returns the best candidate found when one passes; otherwise the best made by :data:`FLOAT_EXACT`
    techniques alone (``failed`` itself when none helped), for a repair to go on from. With it, the
    evaluator that judges it (its FP32 model and quantizer are the recovered ones), and per technique a
    record: kept or not, the gate shortfall before and after, what it changed, its seconds. ``made``:
    recovered models kept from earlier calls, to reuse for another scheme of the same symmetry.
    """
    trial = _Trial(evaluator, failed.scheme, {} if made is None else made)
    state, best, best_evaluator = _State(evaluator.fp32_model), failed, evaluator
    exact = Recovery(evaluator, failed, [])
    steps: list[dict[str, Any]] = []
    kept_so_far: tuple[str, ...] = ()
    for technique in techniques:
        started = time.perf_counter()
        before = shortfall(best.report)
        try:
            attempt = trial.apply(technique, state, kept_so_far)
        except MissingDependencyError as exc:
            log.info("recovery: %s skipped (%s)", technique, exc)
            steps.append({"technique": technique, "kept": False, "skipped": str(exc)})
            continue
        judged_by, candidate = trial.judge(attempt)
        after = shortfall(candidate.report)
        kept = after < before
        log.info("recovery %s: %s %s the gate shortfall %.4f -> %.4f%s", failed.scheme.name, technique,
                 "kept, cutting" if kept else "dropped, leaving", before, after, " (passes)" if candidate.passed else "")
        steps.append({"technique": technique, "kept": kept, "shortfall_before": round(before, 5),
                      "shortfall_after": round(after, 5), "passed": candidate.passed,
                      **({"details": attempt.details[technique]} if technique in attempt.details else {}),
                      "seconds": round(time.perf_counter() - started, 2)})
        if kept:
            state, best, best_evaluator = attempt, candidate, judged_by
            kept_so_far += (technique,)
            if set(kept_so_far) <= set(FLOAT_EXACT):
                exact = Recovery(judged_by, candidate, [])
    if best.passed:
        return Recovery(best_evaluator, best, steps)
    for step in steps:
        if step["kept"] and step["technique"] not in FLOAT_EXACT:
            step.update(kept=False, dropped="the gate still failed; layers kept in float need their own float weights")
    return Recovery(exact.evaluator, exact.candidate, steps)


@dataclass
class RecoveringEvaluator(Evaluator):
    """An :class:`Evaluator` whose repair first tries to recover accuracy (:func:`recover`) and keeps layers in
    float only for what recovery could not win back. ``recoveries`` holds, per scheme, what each technique bought."""

    techniques: tuple[str, ...] = ()
    recoveries: dict[str, Recovery] = field(default_factory=dict)
    made: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def repair(self, failed: Candidate) -> Candidate:
        """Recover, then (if the gate still fails) keep layers in float, starting from the recovered candidate."""
        if not self.techniques:
            return super().repair(failed)
        recovery = recover(self, failed, self.techniques, self.made)
        self.recoveries[failed.scheme.name] = recovery
        if recovery.candidate.passed:
            return recovery.candidate
        return Evaluator.repair(recovery.evaluator, recovery.candidate)

    def quantizer_for(self, candidate: Candidate) -> Quantizer:
        """The quantizer that made ``candidate``: the recovered one when its scheme went through recovery."""
        recovery = self.recoveries.get(candidate.scheme.name)
        return recovery.evaluator.quantizer if recovery is not None else self.quantizer

    def recovery_record(self, candidate: Candidate) -> list[dict[str, Any]] | None:
        """What each recovery technique bought ``candidate``'s scheme (manifest form), or None when none was tried."""
        recovery = self.recoveries.get(candidate.scheme.name)
        return recovery.steps if recovery is not None else None
