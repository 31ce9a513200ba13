"""Benchmark: FP32 vs the INT8 variant `edgedl convert --int8` picks, on this machine's CPU.

Builds (and trains) the test suite's CNN classifier and YOLO-style detector,
converts each with calibration images, and prints, from one interleaved timing
run per model, the INT8/FP32 speed ratio and the agreement with FP32 on held-out
frames. Where OpenVINO is installed, the FP32 file and, when it is Q/DQ, the CPU INT8
file also run on it in the same timing run (OpenVINO cannot read ORT's QOperator ops).

    python tools/bench_int8.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402  (tools/models.py)

import edgedl  # noqa: E402
from edgedl import convert  # noqa: E402
from edgedl.converters.validate import agreement, detection_decoder, latencies_ms, run_all  # noqa: E402
from edgedl.evaluate import DetectionScore  # noqa: E402
from edgedl.loading.ort_session import cpu_session, physical_cores  # noqa: E402
from edgedl.postprocess.base import PostContext  # noqa: E402
from edgedl.postprocess.registry import get  # noqa: E402
from edgedl.postprocess.selection import choose  # noqa: E402
from edgedl.preprocess import preprocess  # noqa: E402


class _Loaded:
    """An ``edgedl.load``-ed model (the product's own OpenVINO settings) timed like an ONNX Runtime session."""

    def __init__(self, model: edgedl.Model) -> None:
        self.model = model

    def get_outputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=o.name) for o in self.model.outputs]

    def run(self, _names: object, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.model(feed).values())


def _openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def bench(kind: str, builder, preset: dict, workdir: Path, rounds: int) -> None:
    onnx_path = builder(workdir, seed=0)
    calib = workdir / f"{kind}-calib"
    calib.mkdir()
    for i, frame in enumerate(models.sample_frames(kind, 96, seed=1)):
        cv2.imwrite(str(calib / f"{i:03d}.png"), frame)
    bundle = convert(onnx_path, workdir / f"{kind}.edgedl", int8=True, calib_data=calib, calib_samples=64,
                     holdout=16, target="all", **preset)
    m = bundle.manifest
    spec = m.preprocess
    frames, truths = models.labelled_frames(kind, 32, seed=99)  # fresh frames, unseen by calibration
    prepared = [preprocess(spec, f) for f in frames]
    samples = [{m.preprocess_input: tensor} for tensor, _ in prepared]
    sessions = {"fp32": cpu_session(bundle.file("fp32")), "int8": cpu_session(bundle.file("int8"))}
    if _openvino_available():
        sessions["openvino-fp32"] = _Loaded(edgedl.load(bundle.path, backend="openvino", precision="fp32"))
        if m.variants["int8"].details.get("format") == "QDQ":  # OpenVINO reads Q/DQ, not ORT's QOperator ops
            sessions["openvino-int8"] = _Loaded(edgedl.load(bundle.path, backend="openvino", precision="int8"))
    reference = run_all(sessions["fp32"], samples)
    decode = detection_decoder(m.task, [(o.name, tuple(o.shape)) for o in m.outputs])
    times = latencies_ms(sessions, samples[0], rounds=rounds, warmup=10)
    scheme = m.variants["int8"].details["scheme"]
    kept = len(m.validation["variants"]["int8"]["excluded_nodes"])
    print(f"\n{kind}: input {m.inputs[0].shape}, INT8 scheme chosen: {scheme} ({kept} node(s) kept in float)")
    post = get(choose(m.task, [(o.name, tuple(o.shape)) for o in m.outputs])) if decode is not None else None

    def against_drawn_shapes(label: str, runs: list[dict[str, np.ndarray]]) -> None:
        """What a user measures: one precision's detections against the shapes really drawn."""
        score = DetectionScore(iou=0.5)
        for (_, geometry), truth, output in zip(prepared, truths, runs, strict=True):
            score.add(post(output, PostContext(geometry=geometry)).detections, truth)
        print(f"  {label} against the drawn shapes: precision {score.precision:.3f}, recall {score.recall:.3f} "
              f"at IoU 0.5 ({score.true_positives} found, {score.false_positives} false, {score.misses} missed)")

    if post is not None:
        against_drawn_shapes("fp32", reference)
    for key in (k for k in ("int8", "openvino-int8") if k in sessions):
        outputs = run_all(sessions[key], samples)
        for name, entry in agreement(reference, outputs, m.task == "classify", decode).items():
            top1 = f", top-1 agreement {entry['top1_agreement']:.3f}" if "top1_agreement" in entry else ""
            if "feature_cosine" in entry:
                top1 += f", worst feature row {entry['feature_cosine']:.5f}"
            if "detections" in entry:
                top1 += (f", detections: recall {entry['detection_recall']:.3f} and precision "
                         f"{entry['detection_precision']:.3f} of FP32's {entry['detections']}")
            print(f"  {key} vs FP32 on {len(samples)} unseen frames, output {name}: cosine {entry['cosine']:.5f} "
                  f"(worst {entry['min_cosine']:.5f}){top1}")
        if post is not None:
            against_drawn_shapes(key, outputs)
    for key, ms in times.items():
        print(f"  {key:>14}: {ms:8.3f} ms median  ({times['fp32'] / ms:5.2f}x vs ORT FP32)")
    print(f"  RATIO {kind} ORT INT8/FP32 speed-up: {times['fp32'] / times['int8']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed runs per variant (interleaved)")
    args = parser.parse_args()
    print(f"CPU threads: {physical_cores()} (one per physical core); OpenVINO: "
          f"{'installed' if _openvino_available() else 'not installed'}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench("classifier", models.build_classifier, {"preprocess": {"preset": "raw01"}}, work, args.rounds)
        bench("detector", models.build_detector, {"preprocess": {"preset": "yolo"}, "task": "detect",
                                                  "labels": list(models.CLASSES)}, work, args.rounds)


if __name__ == "__main__":
    main()
