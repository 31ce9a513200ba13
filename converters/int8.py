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

from edgedl.converters.int8_share import Int8Share, int8_share
from edgedl.converters.qdq_fp16 import half_float_part
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
    float_precision: str = "fp32"  # what the nodes without Q/DQ compute in (see with_fp16_float)

    def summary(self, fp32_ms: float) -> dict[str, Any]:
        """Manifest form."""
        return {**self.scheme.describe(), "passed": self.passed, "reason": self.reason,
                "latency_ms": round(self.latency_ms, 4), "speedup_vs_fp32": round(fp32_ms / self.latency_ms, 3),
                "excluded_nodes": self.excluded, "outputs": self.report}

    def share(self, fp32_model: onnx.ModelProto) -> Int8Share:
        """How many of the FP32 model's convolutions and matrix products this file runs in INT8."""
        return int8_share(onnx.load(str(self.path), load_external_data=False), fp32_model)


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
    _unfused_reference: list[dict[str, np.ndarray]] | None = field(default=None, repr=False)

    def reference_for(self, target: str) -> list[dict[str, np.ndarray]]:
        """FP32's outputs computed as a ``target`` variant's check computes (like with like).

        A TensorRT variant is checked at ONNX Runtime's basic optimization level (see :meth:`judge`), so its
        FP32 reference is computed at that level too: the full level's fusions change a float model's outputs
        by themselves (cosine 0.932 on a real text detector with no Q/DQ at all), which no repair can undo.
        """
        if target != "tensorrt":
            return self.reference
        if self._unfused_reference is None:
            self._unfused_reference = run_all(cpu_session(self.quantizer.fp32_path, fuse_qdq=False), self.holdout)
        return self._unfused_reference

    def check(self, scheme: Scheme, exclude: list[str], tag: str) -> Candidate:
        """Quantize under ``scheme`` (minus ``exclude``) and compare with FP32."""
        path = self.quantizer.quantize(scheme, self.workdir / f"{scheme.name}-{tag}.onnx", exclude)
        return self.judge(scheme, path, exclude)

    def judge(self, scheme: Scheme, path: Path, exclude: list[str]) -> Candidate:
        """Compare the quantized file ``path`` (``scheme`` minus ``exclude``) with FP32."""
        # A TensorRT variant is judged by its Q/DQ arithmetic as written, which is what TensorRT computes
        # (int8 products summed exactly in int32). ONNX Runtime's fused CPU kernels are no model of that:
        # onnxruntime 1.32's s8s8 convolution on x86 put 0.4 of error on a 1.6-wide output that the
        # unfused graph computes within 0.04. CPU variants are judged by the kernels that will run them.
        session = cpu_session(path, fuse_qdq=scheme.target != "tensorrt")
        report = agreement(self.reference_for(scheme.target), run_all(session, self.holdout), self.classify,
                           self.decode)
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
    # A variant named int8 runs most of its convolutions and matrix products in INT8: a slower passing
    # candidate that does beats a faster one that keeps more than a quarter of them in float.
    mostly_int8 = [c for c in candidates if c.passed and c.share(evaluator.fp32_model).mostly_int8]
    if mostly_int8:
        best = min(mostly_int8, key=lambda c: c.latency_ms)
    return best, candidates, fp32_ms


def tensorrt_int8(evaluator: Evaluator) -> Candidate:
    """The TensorRT explicit-quantization variant, accuracy-checked on ONNX Runtime CPU, repaired if needed."""
    candidate = evaluator.check(TENSORRT_SCHEME, [], "full")
    if not candidate.passed:
        candidate = evaluator.repair(candidate)
    return candidate


def with_fp16_float(evaluator: Evaluator, candidate: Candidate, keep_fp32: list[str]) -> Candidate:
    """``candidate`` with its float part (every node without Q/DQ) in FP16 where that still passes the gate.

    TensorRT 11 builds strongly typed: the float part runs in the type the file gives it, so it must be
    FP16 in the file to run as TensorRT 10's INT8+FP16 flags ran it. ``keep_fp32`` nodes (FP16 would overflow
    in them) stay float32. Where the FP16 float part fails the gate, the FP32 one is kept and the log says so.
    """
    path = candidate.path.with_name(f"{candidate.path.stem}-fp16.onnx")
    onnx.save_model(half_float_part(onnx.load(str(candidate.path)), keep_fp32), str(path))
    judged = evaluator.judge(candidate.scheme, path, candidate.excluded)
    if not judged.passed:
        log.warning("the TensorRT variant keeps its float part in FP32: in FP16 it fails the accuracy gate (%s)",
                    judged.reason)
        return candidate
    judged.float_precision = "fp16"
    return judged
