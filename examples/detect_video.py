"""Detect objects in a video file and write an annotated copy, with JSON lines beside it.

    python examples/detect_video.py                         # demo detector on a generated clip
    python examples/detect_video.py model.edgedl clip.mp4 out.mp4

A file source never drops frames: when the model is slower than decoding, decoding waits.
"""

import sys
from pathlib import Path

import edgedl
from edgedl.demo import demo_bundle

if len(sys.argv) > 3:
    bundle, video, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
else:  # no video at hand: record 90 frames of the synthetic camera first
    import cv2

    from edgedl.sources import open_source

    bundle, video, out = demo_bundle(Path("edgedl-demo")), "edgedl-demo/clip.mp4", Path("edgedl-demo/annotated.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for frame in open_source("synthetic://shapes?fps=0&frames=90&seed=3"):
        writer.write(frame.image)
    writer.release()

with edgedl.load(bundle) as model:
    pipeline = edgedl.Pipeline(model, video, sink=[out, out.with_suffix(".jsonl")], on_result=lambda r: None,
                               source_options={"policy": "block"}, overwrite=True)
    pipeline.start()
    pipeline.join()
print(pipeline.stats.summary())
print(f"wrote {out} and {out.with_suffix('.jsonl')}")
