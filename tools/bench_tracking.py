"""Tracking quality and cost: each tracker on the demo detector's boxes over synthetic://shapes streams.

    python tools/bench_tracking.py [--seeds 0-7] [--frames 300] [--objects 3] [--conf 0.25]

The shipped demo detector (INT8 bundle, as ``edgedl demo`` makes it) runs once over each
stream, 640x480 moving shapes that know which object they drew where; its boxes, postprocessed
at the lowest threshold any tracker asks for, then go through every tracker in
:data:`edgedl.tracking.TRACKERS`, one stream at a time. Each tracker is scored against the
ground truth's object ids with motmetrics (MOTA, IDF1, identity switches, false tracks, misses)
over all streams together, and timed per frame (``SourceTrackers.update``, the whole per-frame
cost of tracking). Timestamps are scene time, frame index over 30 fps, so the figures do not
depend on how fast this machine runs the detector. Target: bytetrack IDF1 >= 0.9.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import edgedl
from edgedl.demo import demo_bundle
from edgedl.postprocess.base import PostContext
from edgedl.postprocess.registry import get
from edgedl.postprocess.selection import choose
from edgedl.preprocess import preprocess
from edgedl.results import Prediction
from edgedl.sources import open_source
from edgedl.tracking import TRACKERS, SourceTrackers
from edgedl.tracking.score import TrackingScore, summarize

SCENE_FPS = 30.0  # the shapes move one step per frame, as a 30 fps camera would see them
TARGET_IDF1 = 0.9


def seeds(text: str) -> list[int]:
    """``0-7`` or ``1,4,9`` → the seeds."""
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def detect(model: edgedl.Model, uri: str, conf: float) -> tuple[list[Prediction], list[np.ndarray]]:
    """The detector's predictions at ``conf`` and the ground truth of every frame of ``uri``."""
    manifest = model.source.manifest
    post = get(choose(manifest.task, [(o.name, tuple(o.shape)) for o in model.outputs]))
    predictions, truths = [], []
    with open_source(uri) as stream:
        for frame in stream:
            tensor, geometry = preprocess(manifest.preprocess, frame.image)
            context = PostContext(geometry=geometry, labels=list(manifest.labels), conf_threshold=conf)
            predictions.append(post(model({manifest.preprocess_input: tensor}), context))
            truths.append(frame.truth)
    return predictions, truths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seeds, default=seeds("0-7"), help="scenes: 0-7 or 1,4,9")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--conf", type=float, default=0.25, help="the reporting threshold (the stream's conf)")
    parser.add_argument("--out", type=Path, default=None, help="where the demo bundle is made (default: a temporary folder)")
    args = parser.parse_args()

    trackers = {name: SourceTrackers(name, conf=args.conf) for name in TRACKERS}
    floor = min(t.detector_conf for t in trackers.values())
    with tempfile.TemporaryDirectory(prefix="edgedl-bench-tracking-") as tmp:
        bundle = demo_bundle(args.out or Path(tmp), progress=False)
        with edgedl.load(bundle, backend="onnxruntime") as model:
            streams = {seed: detect(model, f"synthetic://shapes?fps=0&frames={args.frames}&objects={args.objects}"
                                           f"&seed={seed}", floor) for seed in args.seeds}
    frames = sum(len(predictions) for predictions, _ in streams.values())
    print(f"demo detector (INT8, onnxruntime) over {len(streams)} synthetic://shapes streams of {args.frames} frames, "
          f"640x480, {args.objects} objects, seeds {','.join(map(str, args.seeds))}; detections from {floor:g}, "
          f"reported from {args.conf:g}; {frames} frames in all")
    print(f"{'tracker':>10} {'MOTA':>6} {'IDF1':>6} {'ID sw':>6} {'false':>6} {'missed':>6} {'ms/frame':>9}   IDF1 per seed")
    for name, tracker in trackers.items():
        scores, spent = [], 0.0
        for seed, (predictions, truths) in streams.items():
            score = TrackingScore()
            for index, (prediction, truth) in enumerate(zip(predictions, truths, strict=True)):
                start = time.perf_counter()
                tracked = tracker.update(str(seed), prediction, index / SCENE_FPS)
                spent += time.perf_counter() - start
                score.add(tracked.detections, truth)
            scores.append(score)
        total = summarize(scores)
        per_seed = " ".join(f"{summarize([s]).idf1:.2f}" for s in scores)
        print(f"{name:>10} {total.mota:6.3f} {total.idf1:6.3f} {total.switches:6d} {total.false_positives:6d} "
              f"{total.misses:6d} {1000 * spent / frames:9.3f}   {per_seed}")
        if name == "bytetrack":
            verdict = "met" if total.idf1 >= TARGET_IDF1 else "MISSED"
            print(f"{'':>10} target IDF1 >= {TARGET_IDF1}: {verdict}")


if __name__ == "__main__":
    main()
