"""Benchmark: the cost of edgedl's ``model(x)`` over calling the runtime directly, in one interleaved run.

Builds a small CNN (about a millisecond per image on a two-core x86 CPU), then times,
in alternating blocks of calls, ``model(x)`` from ``edgedl.load`` against a
bare ``InferenceSession.run`` with the same session options on the same file. Where
OpenVINO is installed, ``model(x)`` on the OpenVINO backend is timed the same way
against a bare OpenVINO infer request on the same compiled model.

    python tools/bench_overhead.py [--rounds 3000] [--width 64] [--save cnn.onnx]

``--save`` also writes the model, e.g. to convert it and time the CPU runtimes against
each other with ``edgedl compare`` (README, "Runtimes").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgedl
from edgedl.loading.ort_session import physical_cores, session_options


def build_cnn(path: Path, width: int, size: int = 64) -> Path:
    """Three 3x3 conv + ReLU stages (two with stride 2), global pooling and a 10-way classifier."""
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
    graph = helper.make_graph(nodes, "bench_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, block: int = 10,
                warmup: int = 50) -> dict[str, np.ndarray]:
    """Per-call seconds of each callable: blocks of ``block`` calls, alternating contestant and order.

    The first call of each block is not counted: it pays for waking that runtime's
    worker threads after the other contestant ran, a cost of the loop, not of either.
    """
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, rounds // (block - 1))):
        for name in names if r % 2 == 0 else names[::-1]:
            call = calls[name]
            for k in range(block):
                t0 = time.perf_counter()
                call()
                if k:
                    times[name].append(time.perf_counter() - t0)
    return {name: np.asarray(t) for name, t in times.items()}


def report(label: str, ours: np.ndarray, bare: np.ndarray) -> None:
    """Print medians, the ratio and the overhead per call."""
    m_ours, m_bare = float(np.median(ours)), float(np.median(bare))
    print(f"  bare {label}: median {m_bare * 1e3:.4f} ms;  edgedl model(x): median {m_ours * 1e3:.4f} ms")
    print(f"  RATIO edgedl/{label}: {m_ours / m_bare:.4f} (overhead {100 * (m_ours / m_bare - 1):+.2f}%, "
          f"{(m_ours - m_bare) * 1e6:+.1f} µs per call)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000, help="timed calls per contestant (interleaved)")
    parser.add_argument("--width", type=int, default=64, help="channels of the first conv (sets the model's cost)")
    parser.add_argument("--save", type=Path, help="also write the benchmark model to this .onnx path")
    args = parser.parse_args()
    import onnxruntime as ort

    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_cnn(Path(tmp) / "cnn.onnx", args.width)
        if args.save:
            build_cnn(args.save, args.width)
        print(f"model: 3-stage CNN, width {args.width}, input 1x3x64x64; {physical_cores()} threads; "
              f"{args.rounds} interleaved rounds")
        bare = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
        with edgedl.load(path, backend="onnxruntime") as model:
            times = interleaved({"edgedl": lambda: model(x), "bare": lambda: bare.run(None, {"x": x})}, args.rounds)
            np.testing.assert_array_equal(model(x)["logits"], bare.run(None, {"x": x})[0])
        print("ONNX Runtime (CPU):")
        report("onnxruntime", times["edgedl"], times["bare"])
        try:
            import openvino as ov
        except ImportError:
            print("OpenVINO: not installed; skipped")
            return
        with edgedl.load(path, backend="openvino") as model:
            # Two compiled models in one process compete for the same cores (their worker pools alternate),
            # so the bare request comes from the very compiled model edgedl runs: only the wrapper differs.
            request = model._backend._compiled.create_infer_request()
            assert isinstance(request, ov.InferRequest)
            times = interleaved({"edgedl": lambda: model(x), "bare": lambda: request.infer({"x": x}, share_inputs=True)},
                                args.rounds)
        print("OpenVINO (CPU):")
        report("openvino", times["edgedl"], times["bare"])


if __name__ == "__main__":
    main()
