"""edgedl's TensorRT variant beside NVIDIA Model Optimizer's ONNX INT8 PTQ on the hard fixtures.

For each fixture of tools/hard_models.py, both quantizers calibrate on the same frames:

    edgedl int8-trt   edgedl.convert(..., int8=True, target="tensorrt"): the bundle's TensorRT variant
                      (Q/DQ placement of converters/quantize.py's TENSORRT_SCHEME, repaired if needed,
                      float part FP16 where the gate allows)
    modelopt          modelopt.onnx.quantization.quantize(quantize_mode="int8", calibration_eps=["cpu"]),
                      high_precision_dtype fp16 (its default) and fp32

and each is scored on held-out frames with its Q/DQ executed as written (ONNX Runtime's basic level, what
TensorRT computes), against FP32 at the same level: the fixture's measures (detector: ``kept``, the share of
confident FP32 class scores within 0.1), the share of convolutions and matrix products in INT8, and where the
Q/DQ pairs sit (counted by the op that reads the dequantized tensor; ``conv-out`` counts Q/DQ on a
convolution's output). Model Optimizer is optional: ``pip install "nvidia-modelopt[onnx]"`` (its rows say
"not installed" otherwise).

    python tools/bench_trt_quantizers.py [--fixtures hard-detector text-segmenter] [--calib 80] [--held-out 48]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hard_models  # noqa: E402  (tools/hard_models.py)

from edgedl.converters.int8_share import int8_share  # noqa: E402

HOLDOUT = 16  # frames convert holds out of the calibration frames to validate on


def placement(path: Path) -> dict[str, int]:
    """Q/DQ pairs by the op type that reads the dequantized activation (weights apart), and conv outputs quantized."""
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    counts: collections.Counter[str] = collections.Counter()
    inputs = {i.name for i in graph.input}
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        source = producer.get(node.input[0])
        if source is None and node.input[0] not in inputs or source is not None and source.op_type == "Cast" \
                and source.input[0] not in producer and source.input[0] not in inputs:
            continue  # a weight's pair (a Cast of a weight in an FP16 model)
        if source is not None and source.op_type in ("Conv", "ConvTranspose"):
            counts["conv-out"] += 1
        for dq in readers[node.output[0]]:
            for reader in readers[dq.output[0]]:
                counts[reader.op_type] += 1
    return dict(counts.most_common())


def edgedl_trt(fixture: hard_models.Fixture, fp32: Path, frames: list[np.ndarray], work: Path) -> tuple[Path, str]:
    from edgedl.conversion import convert

    calib = work / "calib"
    calib.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(calib / f"{i:03d}.png"), frame)
    bundle = convert(fp32, work / f"{fixture.name}.edgedl", int8=True, target="tensorrt", calib_data=calib,
                     calib_samples=len(frames) - HOLDOUT, holdout=HOLDOUT, preprocess=fixture.preprocess,
                     task=fixture.task, labels=list(fixture.labels) or None, force=True, allow_mixed=True)
    entry = bundle.manifest.validation["variants"]["int8-trt"]
    return bundle.file("int8-trt"), (f"{entry['label']}, {len(entry['excluded_nodes'])} node(s) kept float, "
                                     f"float part {entry['float_precision']}")


def modelopt(fp32: Path, inputs: list[np.ndarray], out: Path, high_precision: str) -> Path:
    from modelopt.onnx.quantization import quantize

    name = hard_models.input_name(fp32)
    quantize(str(fp32), quantize_mode="int8", calibration_data={name: np.concatenate(inputs)},
             calibration_eps=["cpu"], high_precision_dtype=high_precision, output_path=str(out), log_level="ERROR")
    return out


def bench(fixture: hard_models.Fixture, calib: int, held: int, work: Path) -> None:
    fp32 = fixture.build()
    frames = fixture.labelled_frames(calib, seed=1)[0]
    held_out = fixture.inputs(fixture.labelled_frames(held, seed=99)[0])
    rows: list[tuple[str, Path | None, str, float]] = []
    start = time.perf_counter()
    path, note = edgedl_trt(fixture, fp32, frames, work)
    rows.append(("edgedl int8-trt", path, note, time.perf_counter() - start))
    # Model Optimizer patches ONNX Runtime's quantizer when imported, so it runs after edgedl's.
    for dtype in ("fp16", "fp32"):
        name = f"modelopt ({dtype} float part)"
        if importlib.util.find_spec("modelopt") is None:
            rows.append((name, None, "not installed", 0.0))
            continue
        start = time.perf_counter()
        path = modelopt(fp32, fixture.inputs(frames[:-HOLDOUT]), work / f"modelopt-{dtype}.onnx", dtype)
        rows.append((name, path, "", time.perf_counter() - start))
    reference = hard_models.run(fp32, held_out, fuse_qdq=False)
    proto = onnx.load(str(fp32), load_external_data=False)
    print(f"\n## {fixture.name}: {len(held_out)} held-out frames, Q/DQ executed as written, FP32 at the same level")
    for name, path, note, seconds in rows:
        if path is None:
            print(f"- {name}: {note}")
            continue
        scores = fixture.score(reference, hard_models.run(path, held_out, fuse_qdq=False))
        share = int8_share(onnx.load(str(path), load_external_data=False), proto)
        print(f"- {name} ({seconds:.0f}s{', ' + note if note else ''}): "
              + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
              + f"; INT8 convs {share.int8}/{share.compute}; Q/DQ read by {placement(path)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", nargs="+", default=list(hard_models.FIXTURES), choices=list(hard_models.FIXTURES))
    parser.add_argument("--calib", type=int, default=80, help="calibration frames (convert holds 16 of them out)")
    parser.add_argument("--held-out", type=int, default=48, help="frames scored, never calibrated on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.fixtures:
            work = Path(tmp) / name
            work.mkdir()
            bench(hard_models.FIXTURES[name], args.calib, args.held_out, work)


if __name__ == "__main__":
    main()
