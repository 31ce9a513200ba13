"""Benchmark: ONNX Runtime's idle workers spinning or blocking, alone and in a stream, measured in one run.

edgedl builds its CPU sessions with idle workers that spin for up to 1 ms (fastest for ``model(x)`` alone)
and, when a stream starts, rebuilds them with workers that block (``Model.share_cpu``). This prints the
ratios that choice rests on, for each model of tools/bench_overhead.py:

- alone: ``model(x)`` in a loop, latency with blocking and with spinning workers, and of a default ONNX
  Runtime session for reference, timed in interleaved blocks (bench_overhead's ``interleaved``);
- in a stream: frames per second and CPU time per frame of the whole pipeline (synthetic 640x480 shapes,
  preprocessing, inference, postprocessing) with spinning and with blocking workers, in alternating
  rounds; the median of the per-round ratios is reported with its range.

    python tools/bench_spin.py [--models small,detector] [--blocks 20] [--rounds 5] [--frames 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_overhead import GAP_S, MODELS, bench_model, interleaved  # noqa: E402  (tools/bench_overhead.py)

import edgedl  # noqa: E402
from edgedl.loading.ort_session import physical_cores, session_options  # noqa: E402
from edgedl.pipeline import Pipeline  # noqa: E402

#: How each model is streamed: its preprocessing preset and postprocessor.
STREAM = {"small": ("raw01", "raw"), "cnn": ("raw01", "raw"), "detector": ("yolo", "yolov8")}


def alone(path: Path, x: np.ndarray, blocks: int) -> dict[str, float]:
    """Median seconds per ``session.run`` of a default session and of edgedl's, spinning and blocking."""
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    sessions = {"default": ort.InferenceSession(str(path), providers=cpu),
                "spin": ort.InferenceSession(str(path), session_options(), providers=cpu),
                "block": ort.InferenceSession(str(path), session_options(spin=False), providers=cpu)}
    feed = {sessions["default"].get_inputs()[0].name: x}
    times = interleaved({name: lambda s=s: s.run(None, feed) for name, s in sessions.items()}, blocks)
    return {name: float(np.median(t)) for name, t in times.items()}


def stream(model: edgedl.Model, uri: str, preprocess: str, postprocess: str) -> tuple[float, float]:
    """Frames per second, from the first result to the last, and process CPU milliseconds per frame."""
    stamps: list[float] = []
    pipeline = Pipeline(model, uri, on_result=lambda result: stamps.append(time.perf_counter()),
                        preprocess=preprocess, postprocess=postprocess)
    cpu = time.process_time()
    pipeline.start()
    pipeline.join()
    cpu_ms = (time.process_time() - cpu) * 1e3 / len(stamps)
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), cpu_ms


def streamed(path: Path, name: str, rounds: int, frames: int) -> dict[str, list[tuple[float, float]]]:
    """(fps, CPU ms per frame) of each round, streaming with spinning and with blocking workers."""
    preprocess, postprocess = STREAM[name]
    uri = f"synthetic://shapes?fps=0&frames={frames}&seed=3"
    spinning = edgedl.load(path, backend="onnxruntime")
    # What a stream would run without the switch: the model as loaded, its backend told to ignore share_cpu.
    spinning._backend.share_cpu = lambda: None
    blocking = edgedl.load(path, backend="onnxruntime")
    blocking.share_cpu()
    models = {"spin": spinning, "block": blocking}
    runs: dict[str, list[tuple[float, float]]] = {"spin": [], "block": []}
    with spinning, blocking:
        for r in range(rounds):
            for key in ("spin", "block") if r % 2 == 0 else ("block", "spin"):
                time.sleep(GAP_S)
                runs[key].append(stream(models[key], uri, preprocess, postprocess))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small,detector", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--blocks", type=int, default=20, help="timed blocks of calls per contestant, alone")
    parser.add_argument("--rounds", type=int, default=5, help="streams per contestant (alternating)")
    parser.add_argument("--frames", type=int, default=300, help="frames per stream")
    parser.add_argument("--width", type=int, default=64, help="channels of the cnn model's first conv")
    args = parser.parse_args()
    models = args.models.split(",")
    if not set(models) <= set(MODELS):
        parser.error(f"--models takes {', '.join(MODELS)}")
    print(f"{physical_cores()} threads; load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            path, x = bench_model(Path(tmp), name, args.width)
            ms = alone(path, x, args.blocks)
            print(f"\nmodel {name}: input {'x'.join(map(str, x.shape))}")
            print(f"  alone, median ms per call: default session {ms['default'] * 1e3:.4f}, spinning "
                  f"{ms['spin'] * 1e3:.4f}, blocking {ms['block'] * 1e3:.4f}")
            print(f"  RATIO alone blocking/spinning: {ms['block'] / ms['spin']:.3f}; "
                  f"spinning/default session: {ms['spin'] / ms['default']:.3f}")
            runs = streamed(path, name, args.rounds, args.frames)
            fps = {key: np.array([r[0] for r in rounds]) for key, rounds in runs.items()}
            cpu = {key: np.median([r[1] for r in rounds]) for key, rounds in runs.items()}
            ratios = fps["block"] / fps["spin"]
            print(f"  stream, median fps: spinning {np.median(fps['spin']):.1f}, blocking {np.median(fps['block']):.1f}; "
                  f"CPU ms per frame: spinning {cpu['spin']:.2f}, blocking {cpu['block']:.2f}")
            print(f"  RATIO stream fps blocking/spinning: {np.median(ratios):.3f} "
                  f"(rounds {ratios.min():.3f}-{ratios.max():.3f})")


if __name__ == "__main__":
    main()
