"""Benchmark: one camera frame to a 640x640 letterbox model input, CPU path against the GPU kernel, in one run.

    python tools/bench_preprocess.py [--frames 200] [--size 640] [--device 0]

CPU: ``edgedl.preprocess.preprocess`` (OpenCV resize and pad, numpy normalization and layout), the
path calibration uses, per 1280x720 and 1920x1080 frame. GPU, when a CUDA device is usable:
``GpuPreprocessor.run`` (copy into pinned memory, uint8 upload, the kernel), timed two ways: wall
clock per ``run()``, which waits for the work, and GPU time from CUDA events around the upload and
the kernel. Without a GPU the GPU half is skipped and the reason printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edgedl.errors import EdgeDLError
from edgedl.preprocess import PRESETS, PreprocessSpec, preprocess

FRAME_SIZES = [(1280, 720), (1920, 1080)]


def per_call_ms(call: Callable[[], object], frames: int, warmup: int = 10) -> np.ndarray:
    """Milliseconds of each of ``frames`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = np.empty(frames)
    for i in range(frames):
        start = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - start) * 1e3
    return times


def time_gpu(gpu: Any, frame: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock milliseconds per ``run()`` (which waits for the GPU) and the GPU's own, from CUDA events."""
    device_ms: list[float] = []

    def run() -> None:
        gpu.run(frame)
        device_ms.append(gpu.last_device_ms)

    wall = per_call_ms(run, frames)
    return wall, np.asarray(device_ms[-frames:])


def gpu_preprocessor(spec: PreprocessSpec, device: int) -> tuple[Any, str]:
    """A GpuPreprocessor, or None and why there is none."""
    from edgedl.runtimes.cuda.memory import device_count_or_reason

    count, reason = device_count_or_reason()
    if count == 0:
        return None, str(reason)
    try:
        from edgedl.runtimes.cuda.preprocess import GpuPreprocessor

        return GpuPreprocessor(spec, device=device), ""
    except EdgeDLError as exc:
        return None, str(exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="timed frames per size (default 200)")
    parser.add_argument("--size", type=int, default=640, help="model input side (default 640)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device (default 0)")
    args = parser.parse_args()

    spec = PreprocessSpec(args.size, args.size, **PRESETS["yolo"])
    print(f"spec: {args.size}x{args.size} letterbox, RGB, x/255, NCHW float32 (the yolo preset); "
          f"{args.frames} frames per size, median and 90th percentile")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, OpenCV {cv2.__version__} "
          f"with {cv2.getNumThreads()} threads")
    gpu, reason = gpu_preprocessor(spec, args.device)
    if gpu is not None:
        info = gpu.info
        print(f"GPU: {info.name} (sm {info.compute_capability[0]}.{info.compute_capability[1]}), CUDA {info.cuda_runtime}")
    rows = []
    try:
        for width, height in FRAME_SIZES:
            frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
            cpu = per_call_ms(lambda frame=frame: preprocess(spec, frame), args.frames)
            row = [f"{width}x{height}", f"{np.median(cpu):8.3f} / {np.percentile(cpu, 90):7.3f}"]
            if gpu is not None:
                wall, events = time_gpu(gpu, frame, args.frames)
                row += [f"{np.median(wall):8.3f} / {np.percentile(wall, 90):7.3f}",
                        f"{np.median(events):8.3f} / {np.percentile(events, 90):7.3f}",
                        f"{np.median(cpu) / np.median(wall):6.1f}x"]
            rows.append(row)
    finally:
        if gpu is not None:
            gpu.close()

    header = ["frame", "CPU ms (p50 / p90)"]
    if gpu is not None:
        header += ["GPU run() ms (p50 / p90)", "GPU events ms (p50 / p90)", "CPU / GPU run()"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if gpu is None:
        print(f"GPU half SKIPPED: {reason}")


if __name__ == "__main__":
    main()
