"""How much faster can INT8 make the MobileNet-style text segmenter on ONNX Runtime's CPU, at most?

    python tools/bench_int8_ceiling.py [--rounds 15]

Issue 13 asks for the CPU variant of tools/hard_models.py's text segmenter at 1.15x FP32. This
benchmark bounds what any Q/DQ placement can give there: ONNX Runtime's own ``quantize_static``
(per-channel int8 weights, uint8 activations) in six placements (QDQ or QOperator; every op type,
convolutions only, or convolutions without the depthwise ones), each timed against FP32 in one
interleaved run, twice:

- on the segmenter itself;
- on the segmenter with its per-channel affine blocks (the Mul and Add after each hard-swish, as
  PP-LCNetV3 has them) deleted, timed against the real FP32 model. That is no longer the same
  function: it is a bound, the speed INT8 would reach if those element-wise ops cost nothing at all
  (folding them exactly into the neighbouring convolutions removes at most two thirds of them: an
  Add before a zero-padded convolution changes its borders).

If the best figure of the second set stays under the target, no placement of Q/DQ nodes reaches it on
this runtime, and the time goes elsewhere than in edgedl's choice of scheme.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hard_models  # noqa: E402  (tools/hard_models.py)
from bench_quantizers import latencies  # noqa: E402

TARGET = 1.15
AFFINE_AFTER = {"HardSwish", "Mul", "Add"}  # a Mul right after a HardSwish, then the Add right after that Mul


def without_affines(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` with every Mul/Add of a constant that follows a HardSwish (or such a Mul) removed, and how many."""
    graph = model.graph
    constants = {init.name for init in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    producer = {out: node for node in graph.node for out in node.output}
    renamed: dict[str, str] = {}
    dropped = []
    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if node.op_type in ("Mul", "Add") and len(node.input) == 2 and node.input[1] in constants and \
                source is not None and source.op_type in AFFINE_AFTER:
            renamed[node.output[0]] = renamed.get(node.input[0], node.input[0])
            dropped.append(node)
    for node in dropped:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    for output in graph.output:
        output.name = renamed.get(output.name, output.name)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model, len(dropped)


def placements(fp32: Path, out: Path, calibration: list[np.ndarray], reference: Path) -> dict[str, Path]:
    """The ``reference`` FP32 model and ``fp32`` through ONNX Runtime's quantize_static in six placements
    (written under ``out``)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = onnx.load(str(fp32))
    depthwise = [n.name for n in model.graph.node if n.op_type == "Conv" and
                 any(a.name == "group" and a.i > 1 for a in n.attribute)]
    made = {"fp32": reference}
    for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):
        for scope, extra in (("all", {}), ("conv", {"op_types_to_quantize": ["Conv"]}),
                             ("no-depthwise", {"nodes_to_exclude": depthwise})):
            path = out / f"{fmt.name.lower()}-{scope}.onnx"
            quantize_static(str(fp32), str(path), hard_models.Feed(hard_models.input_name(fp32), calibration),
                            quant_format=fmt, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, **extra)
            made[path.stem] = path
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed runs per model (interleaved)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    fixture = hard_models.FIXTURES["text-segmenter"]
    fp32 = fixture.build()
    calibration = fixture.inputs(fixture.labelled_frames(40, seed=1)[0])
    with tempfile.TemporaryDirectory() as tmp:
        bare, removed = without_affines(onnx.load(str(fp32)))
        onnx.save_model(bare, str(Path(tmp) / "no-affine.onnx"))
        best = {}
        for i, (label, model) in enumerate((("segmenter", fp32), (f"segmenter without its {removed} affine Mul/Add "
                                                                  "ops (a bound)", Path(tmp) / "no-affine.onnx"))):
            folder = Path(tmp) / f"set{i}"
            folder.mkdir()
            times = latencies(placements(model, folder, calibration, fp32), calibration[0], args.rounds)
            print(f"\n{label}: FP32 {times['fp32']:.2f} ms on ONNX Runtime's CPU")
            for name, ms in times.items():
                if name != "fp32":
                    print(f"  {name:16} {ms:6.2f} ms  {times['fp32'] / ms:4.2f}x FP32")
            best[label] = max(times["fp32"] / ms for name, ms in times.items() if name != "fp32")
        ceiling = list(best.values())[-1]
        print(f"\nbest placement: {list(best.values())[0]:.2f}x; with the affine ops free: {ceiling:.2f}x "
              f"({'at or above' if ceiling >= TARGET else 'below'} the {TARGET}x target)")


if __name__ == "__main__":
    main()
