"""Benchmark: FP32 vs the INT8 variant `edgedl convert --int8` picks, on this machine's CPU.

Builds (and trains) the test suite's CNN classifier and YOLO-style detector,
converts each with calibration images, and prints, from one interleaved timing
run per model, the INT8/FP32 speed ratio and the agreement with FP32 on held-out
frames. Where OpenVINO is installed, the same FP32 and INT8 files also run on it
in the same timing run (its INT8 is the bundle's symmetric Q/DQ variant).

    python tools/bench_int8.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402  (tools/models.py)

from edgedl import convert  # noqa: E402
from edgedl.converters.validate import agreement, latencies_ms, run_all  # noqa: E402
from edgedl.preprocess import preprocess  # noqa: E402
from edgedl.runtimes.ort_session import cpu_session, physical_cores  # noqa: E402


class _OpenVINO:
    """Adapter so an OpenVINO compiled model times like an ONNX Runtime session."""

    def __init__(self, path: Path) -> None:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                               "INFERENCE_NUM_THREADS": physical_cores()})
        self.request = compiled.create_infer_request()

    def run(self, _names: object, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.request.infer(feed).values())


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
    frames = models.sample_frames(kind, 32, seed=99)  # fresh frames, unseen by calibration
    samples = [{m.preprocess_input: preprocess(spec, f)[0]} for f in frames]
    sessions = {"fp32": cpu_session(bundle.file("fp32")), "int8": cpu_session(bundle.file("int8"))}
    if _openvino_available():
        sessions["openvino-fp32"] = _OpenVINO(bundle.file("fp32"))
        # OpenVINO reads Q/DQ graphs (not ORT's QOperator ops): give it the symmetric Q/DQ variant.
        sessions["openvino-int8"] = _OpenVINO(bundle.file("int8-trt"))
    reference = run_all(sessions["fp32"], samples)
    report = agreement(reference, run_all(sessions["int8"], samples), m.task == "classify")
    times = latencies_ms(sessions, samples[0], rounds=rounds, warmup=10)
    scheme = m.variants["int8"].details["scheme"]
    kept = len(m.validation["variants"]["int8"]["excluded_nodes"])
    print(f"\n{kind}: input {m.inputs[0].shape}, INT8 scheme chosen: {scheme} ({kept} node(s) kept in float)")
    for name, entry in report.items():
        top1 = f", top-1 agreement {entry['top1_agreement']:.3f}" if "top1_agreement" in entry else ""
        if "feature_cosine" in entry:
            top1 += f", worst feature row {entry['feature_cosine']:.5f}"
        print(f"  agreement on {len(samples)} unseen frames, output {name}: cosine {entry['cosine']:.5f} "
              f"(worst {entry['min_cosine']:.5f}){top1}")
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
        bench("detector", models.build_detector, {"preprocess": {"preset": "yolo"}}, work, args.rounds)


if __name__ == "__main__":
    main()
