"""How much of a quantized model really runs in INT8, and whether that is enough to call it INT8.

The work of a vision model is its convolutions and matrix products; a variant that keeps many of
them in float runs at about float speed whatever its name says. This module counts them (QOperator
kernels, and Q/DQ-wrapped nodes whose data and weight both come dequantized from INT8) and refuses a
variant named ``int8`` that keeps more than :data:`~edgedl.options.MAX_FLOAT_SHARE` of them in float,
unless the user opted into a mixed variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import onnx

from edgedl.errors import AccuracyGateError
from edgedl.options import MAX_FLOAT_SHARE

#: The ops that carry a vision model's arithmetic.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
#: ONNX Runtime's QOperator forms of them (named after the float node plus ``_quant``).
INTEGER_OPS = frozenset({"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QGemm",
                         "QLinearConvTranspose"})
_QUANT_SUFFIX = "_quant"


@dataclass(frozen=True)
class Int8Share:
    """The convolutions and matrix products of the FP32 model, and which of them run in INT8."""

    compute: int
    int8: int
    float_nodes: tuple[str, ...]

    @property
    def share(self) -> float:
        """Share of the convolutions and matrix products that run in INT8 (1.0 for a model with none)."""
        return self.int8 / self.compute if self.compute else 1.0

    @property
    def mostly_int8(self) -> bool:
        """Whether at most :data:`MAX_FLOAT_SHARE` of them stay in float."""
        return self.compute - self.int8 <= MAX_FLOAT_SHARE * self.compute

    def describe(self) -> dict[str, Any]:
        """Manifest form."""
        return {"compute_nodes": self.compute, "int8_nodes": self.int8, "share": round(self.share, 4),
                "float_nodes": list(self.float_nodes)}


def int8_share(quantized: onnx.ModelProto, fp32: onnx.ModelProto) -> Int8Share:
    """Count ``fp32``'s Conv/ConvTranspose/MatMul/Gemm nodes and those that ``quantized`` runs in INT8."""
    producer = {out: node.op_type for node in quantized.graph.node for out in node.output}
    integer: set[str] = set()
    unnamed = 0
    for node in quantized.graph.node:
        if node.op_type in INTEGER_OPS:
            name = node.name.removesuffix(_QUANT_SUFFIX)
        elif node.op_type in COMPUTE_OPS and len(node.input) > 1 and \
                all(producer.get(i) == "DequantizeLinear" for i in node.input[:2]):
            name = node.name
        else:
            continue
        if name:
            integer.add(name)
        else:
            unnamed += 1
    compute = [n.name for n in fp32.graph.node if n.op_type in COMPUTE_OPS]
    in_float = tuple(n for n in compute if n not in integer)
    int8 = min(len(compute), len(compute) - len(in_float) + unnamed)
    return Int8Share(len(compute), int8, in_float[: len(compute) - int8] if unnamed else in_float)


def accuracy_phrase(report: Mapping[str, Mapping[str, float]]) -> str:
    """A report's worst agreement with FP32 in a few words: cosine, and detections or top-1 where measured."""
    outputs = list(report.values())
    words = [f"cosine {min(min(o['cosine'], o.get('feature_cosine', 1.0)) for o in outputs):.4f}"]
    found = [min(o["detection_recall"], o["detection_precision"]) for o in outputs if "detection_recall" in o]
    if found:
        words.append(f"detections agree {min(found):.3f}")
    top1 = [o["top1_agreement"] for o in outputs if "top1_agreement" in o]
    if top1:
        words.append(f"top-1 {min(top1):.3f}")
    return ", ".join(words)


def _names(nodes: Iterable[str], limit: int = 6) -> str:
    nodes = list(nodes)
    shown = ", ".join(nodes[:limit])
    return shown + (f" … (+{len(nodes) - limit} more)" if len(nodes) > limit else "")


def refuse_float(variant: str, scheme: str, share: Int8Share, report: Mapping[str, Mapping[str, float]],
                 speedup: float) -> AccuracyGateError:
    """The error for a best passing mix that keeps too much in float: what it was, and the ways out."""
    speed = f"{speedup:.2f}x FP32 on this CPU" if math.isfinite(speedup) else "speed measured on the device only"
    return AccuracyGateError(
        f"INT8 is not viable for this model ({variant}): the best mix that passes the accuracy gate ({scheme}; "
        f"{accuracy_phrase(report)}; {speed}) keeps {share.compute - share.int8} of its {share.compute} "
        f"convolutions and matrix products in float (more than {MAX_FLOAT_SHARE:.0%}): {_names(share.float_nodes)}",
        fix="pass --allow-mixed to write that mix as a labelled mixed INT8/float variant, calibrate with more "
            "representative --calib-data or another --calib-method, or use --fp16")
