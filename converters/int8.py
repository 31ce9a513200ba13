"""Choose, check and repair INT8 variants.

On a CPU the fastest INT8 scheme depends on the processor and the model (QDQ on
all ops can beat FP32 while QOperator or Conv-only QDQ run slower than FP32), so
every candidate is timed here, against FP32, in one interleaved run, and the
fastest one that keeps the accuracy gate wins. A variant that fails the gate is
repaired by keeping its most damaged layers in float, verified step by step.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedl.converters.quantize import CPU_SCHEMES, TENSORRT_SCHEME, Quantizer, Scheme
from edgedl.converters.sensitivity import Damage, exclusion_steps, rank_damage
from edgedl.converters.validate import Decoder, Gate, agreement, latencies_ms, passes, run_all, shortfall
from edgedl.errors import AccuracyGateError
from edgedl.loading.ort_session import cpu_session
from edgedl.types import Sample

log = logging.getLogger("edgedl.int8")


@dataclass
class Candidate:
    """One quantized file and how it compared with FP32."""

    scheme: Scheme
    path: Path
    report: dict[str, dict[str, float]]
    passed: bool
    reason: str
    excluded: list[str] = field(default_factory=list)
    latency_ms: float = float("nan")
    quantizable: int = 0  # nodes the scheme quantizes when nothing is excluded (known once a repair ranked them)

    def summary(self, fp32_ms: float) -> dict[str, Any]:
        """Manifest form."""
        return {**self.scheme.describe(), "passed": self.passed, "reason": self.reason,
                "latency_ms": round(self.latency_ms, 4), "speedup_vs_fp32": round(fp32_ms / self.latency_ms, 3),
                "excluded_nodes": self.excluded, "outputs": self.report}

    def mostly_float(self) -> bool:
        """Whether the repair kept half or more of the quantizable nodes in float: INT8 in name more than in speed."""
        return self.quantizable > 0 and 2 * len(self.excluded) >= self.quantizable


def warn_if_mostly_float(candidate: Candidate, variant: str) -> None:
    """Say so when a variant passed the gate only by keeping most of the model in float."""
    if candidate.mostly_float():
        log.warning("the %s variant passes the accuracy gate only with %d of its %d quantized nodes kept in float, so "
                    "it runs at about FP32 speed; try --calib-method entropy|percentile or more representative "
                    "--calib-data, or use --fp16", variant, len(candidate.excluded), candidate.quantizable)


@dataclass
class Evaluator:
    """Everything needed to judge a quantized file: FP32 reference outputs, samples, the gate."""

    fp32_model: onnx.ModelProto
    quantizer: Quantizer
    holdout: list[Sample]
    reference: list[dict[str, np.ndarray]]
    gate: Gate
    classify: bool
    workdir: Path
    decode: Decoder | None = None  # detectors: judged by their detections too (see validate.passes)

    def check(self, scheme: Scheme, exclude: list[str], tag: str) -> Candidate:
        """Quantize under ``scheme`` (minus ``exclude``) and compare with FP32."""
        path = self.quantizer.quantize(scheme, self.workdir / f"{scheme.name}-{tag}.onnx", exclude)
        # A TensorRT variant is judged by its Q/DQ arithmetic as written, which is what TensorRT computes
        # (int8 products summed exactly in int32). ONNX Runtime's fused CPU kernels are no model of that:
        # onnxruntime 1.32's s8s8 convolution on x86 put 0.4 of error on a 1.6-wide output that the
        # unfused graph computes within 0.04. CPU variants are judged by the kernels that will run them.
        session = cpu_session(path, fuse_qdq=scheme.target != "tensorrt")
        report = agreement(self.reference, run_all(session, self.holdout), self.classify, self.decode)
        ok, reason = passes(report, self.gate)
        return Candidate(scheme, path, report, ok, reason, list(exclude))

    def repair(self, failed: Candidate) -> Candidate:
        """Keep the layers INT8 hurts most in float, in growing sets, until the gate passes.

        First by the per-channel damage ranking (one FP32 run), for sets of up to a quarter of the
        quantized nodes. Where that finds nothing, the damage is not where per-channel error shows it
        (a small error early in the network that later layers amplify into one class's scores), so the
        nodes are ranked by what quantizing them does to the outputs: measured, see :meth:`sensitivity`.
        """
        ranges = self.quantizer.ranges(failed.scheme.symmetric_activations)
        quantized = _quantized_nodes(failed.path, self.fp32_model)
        ranking = rank_damage(self.fp32_model, ranges, self.holdout[:8], failed.scheme.activations_signed,
                              quantized)
        steps = [s for s in exclusion_steps(ranking) if len(s) <= max(1, len(quantized) // 4)]
        last = self._first_passing(failed, steps, "repair")
        if not last.passed:
            ordered = [n.name for n in self.fp32_model.graph.node if n.name in quantized]
            last = self._first_passing(failed, exclusion_steps(self.sensitivity(failed.scheme, ordered)), "sensitive")
        if last.passed:
            last.quantizable = len(quantized)
            return last
        raise AccuracyGateError(
            f"INT8 ({failed.scheme.name}) fails the accuracy gate even with {len(last.excluded)} layer(s) kept "
            f"in float ({last.reason})",
            fix="calibrate with more representative --calib-data, try --calib-method entropy|percentile, "
                "lower --min-cosine/--min-top1, or use --fp16")

    def _first_passing(self, failed: Candidate, steps: list[list[str]], tag: str) -> Candidate:
        """The first exclusion set in ``steps`` whose variant passes the gate, else the last one tried."""
        last = failed
        for step, exclude in enumerate(steps):
            log.info("repair %s: keeping %d node(s) in float", failed.scheme.name, len(exclude))
            last = self.check(failed.scheme, exclude, f"{tag}{step}")
            if last.passed:
                break
        return last

    def sensitivity(self, scheme: Scheme, ordered: list[str]) -> list[Damage]:
        """Quantized nodes (``ordered`` as in the graph) ranked by the harm quantizing them does to the outputs.

        Group testing keeps it to about 3·√n quantization passes instead of n: consecutive groups of
        √n nodes are quantized alone (everything else in float) and judged by :func:`shortfall`, then
        the nodes of the two worst groups one by one. Those nodes lead the ranking, by their own harm,
        followed by the other groups' nodes, worst group first.
        """
        log.info("repair %s: measuring the harm of %d quantized nodes in groups", scheme.name, len(ordered))
        size = max(1, math.isqrt(len(ordered)))
        groups = [ordered[i:i + size] for i in range(0, len(ordered), size)]

        def alone(nodes: list[str], tag: str) -> float:
            keep = set(nodes)
            return shortfall(self.check(scheme, [n for n in ordered if n not in keep], tag).report)

        harm = [alone(group, f"group{i}") for i, group in enumerate(groups)]
        by_harm = sorted(range(len(groups)), key=lambda i: -harm[i])
        singles = {n: alone([n], f"node{i}-{j}") for i in by_harm[:2] for j, n in enumerate(groups[i])}
        ranked = [Damage(n, loss, (n,)) for n, loss in sorted(singles.items(), key=lambda item: -item[1])]
        return ranked + [Damage(n, harm[i], (n,)) for i in by_harm[2:] for n in groups[i]]


def _quantized_nodes(quantized_path: Path, fp32_model: onnx.ModelProto) -> set[str]:
    """FP32 node names whose tensors the quantized model wraps in Q/DQ (or replaced by integer ops)."""
    q = onnx.load(str(quantized_path), load_external_data=False)
    quantized_tensors: set[str] = set()
    for node in q.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd"):
            quantized_tensors.update(t.split("_QuantizeLinear")[0].split("_DequantizeLinear")[0]
                                     for t in list(node.input) + list(node.output))
    names = {n.name for n in q.graph.node}
    return {n.name for n in fp32_model.graph.node
            if n.name and (n.name not in names or quantized_tensors.intersection(list(n.input) + list(n.output)))}


def best_cpu_int8(evaluator: Evaluator, feed: Sample, fp32_session: Any) -> tuple[Candidate, list[Candidate], float]:
    """The fastest CPU scheme that passes the gate, as is or repaired.

    Every scheme is timed against FP32 in one interleaved run. A scheme that fails the gate but ran
    faster than the best passing one is repaired (its most damaged layers kept in float) and timed
    again beside the current best, so a repaired fast scheme can still beat a slower clean one.
    Returns the winner, every candidate tried, and FP32's latency from the last timing run.
    """
    candidates = [evaluator.check(s, [], "full") for s in CPU_SCHEMES]
    sessions = {"fp32": fp32_session, **{c.scheme.name: cpu_session(c.path) for c in candidates}}
    times = latencies_ms(sessions, feed)
    for c in candidates:
        c.latency_ms = times[c.scheme.name]
    fp32_ms = times["fp32"]
    best = min((c for c in candidates if c.passed), key=lambda c: c.latency_ms, default=None)
    failure: AccuracyGateError | None = None
    for failed in sorted((c for c in candidates if not c.passed), key=lambda c: c.latency_ms):
        if best is not None and failed.latency_ms >= best.latency_ms:
            break
        log.info("%s fails the gate (%s); searching for layers to keep in float", failed.scheme.name, failed.reason)
        try:
            repaired = evaluator.repair(failed)
        except AccuracyGateError as exc:
            failure = exc
            continue
        contest = {"fp32": fp32_session, "repaired": cpu_session(repaired.path)}
        if best is not None:
            contest["best"] = cpu_session(best.path)
        times = latencies_ms(contest, feed)
        repaired.latency_ms, fp32_ms = times["repaired"], times["fp32"]
        candidates.append(repaired)
        if best is not None:
            best.latency_ms = times["best"]
        if best is None or repaired.latency_ms < best.latency_ms:
            best = repaired
    if best is None:
        assert failure is not None
        raise failure
    warn_if_mostly_float(best, "CPU INT8")
    return best, candidates, fp32_ms


def tensorrt_int8(evaluator: Evaluator) -> Candidate:
    """The TensorRT explicit-quantization variant, accuracy-checked on ONNX Runtime CPU, repaired if needed."""
    candidate = evaluator.check(TENSORRT_SCHEME, [], "full")
    if not candidate.passed:
        candidate = evaluator.repair(candidate)
        warn_if_mostly_float(candidate, "TensorRT INT8")
    return candidate
