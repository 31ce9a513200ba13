"""Benchmark: edgedl's ``model(x)`` against ONNX Runtime called directly, measured in one interleaved run.

For each model it times, in alternating blocks of calls, ``model(x)`` from ``edgedl.load`` against a
default ``onnxruntime.InferenceSession(path)`` (no options: what a user switching to edgedl compares with)
and against a bare session with edgedl's own options on the same file (what the wrapper alone costs).
Models: ``small``, a CNN with a text-angle classifier's input (1x3x48x192, about 0.1 ms on a 2-core x86
CPU); ``detector``, the shipped demo detector (1x3x256x256, about 6 ms); ``cnn``, a 1x3x64x64 CNN of
``--width`` (about 1 ms at 64). Where OpenVINO is installed, ``model(x)`` on the OpenVINO backend is timed
the same way against a bare OpenVINO infer request on the same compiled model. Each RATIO is the median over
rounds of the round's ratio of block medians, so a load that drifts during the run cancels within each round.

    python tools/bench_overhead.py [--models small,detector] [--blocks 40] [--width 64] [--save cnn.onnx]

``--save`` also writes the ``cnn`` model, e.g. to convert it and time the CPU runtimes against each other
with ``edgedl compare`` (README, "Runtimes").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgedl
from edgedl.demo import DETECTOR
from edgedl.loading.ort_session import physical_cores, session_options

#: Idle time before each block of calls. ONNX Runtime's workers keep spinning after a default session's
#: last run (about 35 ms measured on a 2-core x86 VM), on cores the next contestant needs.
GAP_S = 0.1


def build_cnn(path: Path, width: int, size: tuple[int, int] = (64, 64)) -> Path:
    """Three 3x3 conv + ReLU stages (two with stride 2), global pooling and a 10-way classifier; input 1x3xHxW."""
    rng = np.random.default_rng(0)
    shapes = {"w1": (width, 3, 3, 3), "w2": (2 * width, width, 3, 3), "w3": (2 * width, 2 * width, 3, 3),
              "fc": (10, 2 * width)}
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32), n) for n, s in shapes.items()]
    inits += [numpy_helper.from_array(np.zeros(s[0], np.float32), f"b{n}") for n, s in shapes.items()]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "bw1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "bw2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "bw3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "bfc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "bench_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def interleaved(calls: dict[str, Callable[[], object]], blocks: int, block_s: float = 0.05,
                gap_s: float = GAP_S, warmup: int = 20) -> dict[str, list[np.ndarray]]:
    """Per-call seconds of each callable, an array per block: ``blocks`` blocks each, alternating contestant and order.

    A block calls one contestant back to back for ``block_s`` seconds, after ``gap_s`` idle, so that no
    contestant's spinning workers tax the next one. Its first call is not counted: it pays for waking
    that contestant's workers after the gap, a cost of the loop, not of either.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for r in range(blocks):
        for name in names if r % 2 == 0 else names[::-1]:
            call = calls[name]
            time.sleep(gap_s)
            call()
            block: list[float] = []
            end = time.perf_counter() + block_s
            while True:
                t0 = time.perf_counter()
                call()
                t1 = time.perf_counter()
                block.append(t1 - t0)
                if t1 > end:
                    break
            times[name].append(np.asarray(block))
    return times


def report(label: str, ours: list[np.ndarray], bare: list[np.ndarray]) -> None:
    """Print medians and the ratio: the median over rounds of each round's ratio of block medians, so a load that
    drifts during the run (this shared VM's does, by ±25% at 0.1 ms a call) cancels within each round."""
    m_ours, m_bare = float(np.median(np.concatenate(ours))), float(np.median(np.concatenate(bare)))
    ratios = [float(np.median(a) / np.median(b)) for a, b in zip(ours, bare, strict=True)]
    ratio = float(np.median(ratios))
    low, high = np.percentile(ratios, [25, 75])
    print(f"  {label}: median {m_bare * 1e3:.4f} ms;  edgedl model(x): median {m_ours * 1e3:.4f} ms")
    print(f"  RATIO edgedl/{label}: {ratio:.4f} (rounds' middle half {low:.3f}-{high:.3f}; overhead "
          f"{100 * (ratio - 1):+.2f}%, {(m_ours - m_bare) * 1e6:+.1f} µs per call)")


MODELS = ("small", "detector", "cnn")


def bench_model(tmp: Path, name: str, width: int) -> tuple[Path, np.ndarray]:
    """The ONNX file of benchmark model ``name`` (one of :data:`MODELS`) and an input for it."""
    if name == "detector":
        path, shape = DETECTOR, (1, 3, 256, 256)
    elif name == "small":
        path, shape = build_cnn(tmp / "small.onnx", 16, (48, 192)), (1, 3, 48, 192)
    else:
        path, shape = build_cnn(tmp / "cnn.onnx", width), (1, 3, 64, 64)
    return path, np.random.default_rng(1).uniform(0, 1, shape).astype(np.float32)


def bench_onnxruntime(path: Path, x: np.ndarray, blocks: int) -> None:
    """``model(x)`` against a default session and a bare session with edgedl's options."""
    import onnxruntime as ort

    default = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {default.get_inputs()[0].name: x}
    bare = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    with edgedl.load(path, backend="onnxruntime") as model:
        times = interleaved({"edgedl": lambda: model(feed), "default": lambda: default.run(None, feed),
                             "bare": lambda: bare.run(None, feed)}, blocks)
        np.testing.assert_array_equal(next(iter(model(feed).values())), bare.run(None, feed)[0])
    print("ONNX Runtime (CPU):")
    report("default onnxruntime session", times["edgedl"], times["default"])
    report("onnxruntime session with edgedl's options", times["edgedl"], times["bare"])


def bench_openvino(path: Path, x: np.ndarray, blocks: int) -> None:
    """``model(x)`` on the OpenVINO backend against a bare infer request on the same compiled model."""
    import openvino as ov

    with edgedl.load(path, backend="openvino") as model:
        feed = {model.inputs[0].name: x}
        # Two compiled models in one process compete for the same cores (their worker pools alternate),
        # so the bare request comes from the very compiled model edgedl runs: only the wrapper differs.
        request = model._backend._compiled.create_infer_request()
        assert isinstance(request, ov.InferRequest)
        times = interleaved({"edgedl": lambda: model(feed), "bare": lambda: request.infer(feed, share_inputs=True)},
                            blocks)
    print("OpenVINO (CPU):")
    report("bare openvino request", times["edgedl"], times["bare"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small,detector", help="comma-separated: small, detector, cnn")
    parser.add_argument("--blocks", type=int, default=40, help="timed blocks of calls per contestant (interleaved)")
    parser.add_argument("--width", type=int, default=64, help="channels of the cnn model's first conv (sets its cost)")
    parser.add_argument("--save", type=Path, help="also write the cnn model to this .onnx path")
    args = parser.parse_args()
    models = args.models.split(",")
    if not set(models) <= set(MODELS):
        parser.error(f"--models takes {', '.join(MODELS)}")
    try:
        import openvino  # noqa: F401
        has_openvino = True
    except ImportError:
        has_openvino = False
    if args.save:
        build_cnn(args.save, args.width)
    print(f"{physical_cores()} threads; {args.blocks} interleaved blocks per contestant; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            path, x = bench_model(Path(tmp), name, args.width)
            print(f"\nmodel {name}: input {'x'.join(map(str, x.shape))}")
            bench_onnxruntime(path, x, args.blocks)
            if has_openvino:
                bench_openvino(path, x, args.blocks)
            else:
                print("OpenVINO: not installed; skipped")


if __name__ == "__main__":
    main()
