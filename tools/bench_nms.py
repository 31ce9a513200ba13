"""NMS speed: edgedl's numpy NMS against OpenCV's ``cv2.dnn.NMSBoxesBatched`` on the same boxes, in one run.

    python tools/bench_nms.py [--repeats 200] [--classes 80] [--seed 0]

Inputs look like YOLOv8 at 640x640 (8400 anchors on its stride 8/16/32 grid; 1000 and 3000 are
random subsets of them). A dozen objects lie in the image: anchors inside one predict its box with
some jitter and a score that fades away from its centre, the others a small box of their own with a
low score, so most fail the 0.25 confidence threshold, as in a real frame. The worst case gives
every anchor a passing score (the same boxes): NMS then sees all of them, up to the 3000-candidate cap.

Both sides get the threshold, the IoU (0.45) and class-aware suppression; OpenCV gets its boxes
ready as x, y, w, h (its format, not timed) and the same 3000-candidate cap (``top_k``). edgedl
also stops at 300 kept boxes (its ``max_detections``), which OpenCV cannot, so it is timed with no
cap as well. Timings alternate between the two, median of ``--repeats``. The check: both keep the
same boxes in the same order (edgedl's 300 are OpenCV's first 300; with no cap, all of them).
Columns: ``to NMS`` candidates past the threshold and the cap, ``kept`` boxes NMS keeps with no cap.
A last line times the whole ``yolov8`` postprocessor on a ``[1, 84, 8400]`` output.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgedl.postprocess import PostContext, get, nms  # noqa: E402
from edgedl.preprocess import PreprocessSpec  # noqa: E402

SIZE = 640
STRIDES = (8, 16, 32)
CONF, IOU, MAX_DETECTIONS, MAX_CANDIDATES = 0.25, 0.45, 300, 3000
OBJECTS = 12


def anchor_centres() -> np.ndarray:
    """YOLOv8's 8400 anchor centres at 640x640."""
    grids = []
    for stride in STRIDES:
        cells = (np.arange(SIZE // stride) + 0.5) * stride
        x, y = np.meshgrid(cells, cells)
        grids.append(np.stack([x.ravel(), y.ravel()], axis=1))
    return np.concatenate(grids)


def frame(n: int, classes: int, all_pass: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` anchors' boxes (x1, y1, x2, y2), scores and class ids, as described above."""
    centres = anchor_centres()
    centres = centres[np.sort(rng.choice(len(centres), n, replace=False))]
    objects, sizes = rng.uniform(0, SIZE, (OBJECTS, 2)), rng.uniform(20, 250, (OBJECTS, 2))
    object_classes = rng.integers(0, classes, OBJECTS)
    inside = (np.abs(centres[:, None] - objects[None]) < sizes[None] / 2).all(axis=2)
    on_object, which = inside.any(axis=1), inside.argmax(axis=1)
    jitter = rng.normal(0, 0.08, (n, 4))
    centre = np.where(on_object[:, None], objects[which] + jitter[:, :2] * sizes[which], centres)
    size = np.where(on_object[:, None], sizes[which] * (1 + jitter[:, 2:]), rng.uniform(10, 200, (n, 2)))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    class_ids = np.where(on_object, object_classes[which], rng.integers(0, classes, n))
    if all_pass:
        scores = rng.uniform(CONF + 0.01, 1.0, n)
    else:
        fade = np.exp(-(((centres - objects[which]) / (sizes[which] / 4)) ** 2).sum(axis=1))
        scores = np.where(on_object, 0.95 * fade * rng.uniform(0.6, 1.0, n), rng.beta(1, 30, n))
    return boxes, scores.astype(np.float32), class_ids


def edgedl_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, max_output: int) -> np.ndarray:
    """Threshold, then NMS, as the detection postprocessors do; indices into the input."""
    passed = np.flatnonzero(scores > CONF)
    return passed[nms(boxes[passed], scores[passed], IOU, class_ids[passed], max_output=max_output,
                      max_candidates=MAX_CANDIDATES)]


def median_ms(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median milliseconds of each function, calls alternating between them."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1e3)
    return [float(np.median(t)) for t in times]


def yolov8_decode_ms(classes: int, repeats: int, rng: np.random.Generator) -> float:
    """Median milliseconds of the whole ``yolov8`` postprocessor on a realistic ``[1, 4+C, 8400]`` output."""
    boxes, scores, class_ids = frame(8400, classes, False, rng)
    table = np.zeros((4 + classes, 8400), dtype=np.float32)
    table[:2] = ((boxes[:, :2] + boxes[:, 2:]) / 2).T
    table[2:4] = (boxes[:, 2:] - boxes[:, :2]).T
    table[4:] = rng.uniform(0, 0.02, (classes, 8400))
    table[4 + class_ids, np.arange(8400)] = scores
    spec = PreprocessSpec(width=SIZE, height=SIZE, resize="letterbox")
    ctx = PostContext(geometry=spec.geometry(1280, 720), input_size=(SIZE, SIZE), labels=[])
    decode, outputs = get("yolov8"), {"output0": table[None]}
    return median_ms([lambda: decode(outputs, ctx)], repeats)[0]


def compare(n: int, classes: int, all_pass: bool, repeats: int, rng: np.random.Generator) -> tuple[str, bool]:
    """One table row for ``n`` anchors, and whether edgedl and OpenCV kept the same boxes."""
    boxes, scores, class_ids = frame(n, classes, all_pass, rng)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    ids32 = class_ids.astype(np.int32)

    def ours() -> np.ndarray:
        return edgedl_nms(boxes, scores, class_ids, MAX_DETECTIONS)

    def uncapped() -> np.ndarray:
        return edgedl_nms(boxes, scores, class_ids, n)

    def opencv() -> np.ndarray:
        return np.asarray(cv2.dnn.NMSBoxesBatched(xywh, scores, ids32, CONF, IOU, 1.0, MAX_CANDIDATES)).reshape(-1)

    reference = opencv()
    same = np.array_equal(ours(), reference[:MAX_DETECTIONS]) and np.array_equal(uncapped(), reference)
    t_ours, t_uncapped, t_cv = median_ms([ours, uncapped, opencv], repeats)
    row = (f"{'all pass' if all_pass else 'realistic':<10}{n:>8}{min(int((scores > CONF).sum()), MAX_CANDIDATES):>8}"
           f"{len(reference):>6}{t_ours:>11.3f}{t_uncapped:>11.3f}{t_cv:>9.3f}{t_cv / t_ours:>11.1f}x  "
           f"{'yes' if same else 'NO'}")
    return row, same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"opencv {cv2.__version__}, numpy {np.__version__}; conf {CONF}, IoU {IOU}, {args.classes} classes, "
          f"median of {args.repeats}")
    print(f"{'scores':<10}{'anchors':>8}{'to NMS':>8}{'kept':>6}{'edgedl ms':>11}{'no cap ms':>11}{'cv2 ms':>9}"
          f"{'cv2/edgedl':>12}  same boxes")
    all_same = True
    for all_pass in (False, True):
        for n in (1000, 3000, 8400):
            row, same = compare(n, args.classes, all_pass, args.repeats, rng)
            print(row)
            all_same &= same
    print(f"whole yolov8 postprocessor, [1, {4 + args.classes}, 8400] output, realistic scores: "
          f"{yolov8_decode_ms(args.classes, args.repeats, rng):.3f} ms")
    if not all_same:
        print("edgedl and OpenCV kept different boxes", file=sys.stderr)
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
