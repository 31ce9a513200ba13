"""Several cameras through one model, with tracking: count the objects that cross a line, per camera.

    python examples/multi_camera.py                                          # demo detector, three synthetic cameras
    python examples/multi_camera.py model.edgedl rtsp://cam1/live rtsp://cam2/live csi://0

Frames from every camera are batched into one model call; each detection keeps a track id per camera,
so an object is counted once when its centre moves from the upper half of the frame to the lower half.
"""

import sys
from collections import Counter
from pathlib import Path

import edgedl
from edgedl.demo import demo_bundle

bundle = sys.argv[1] if len(sys.argv) > 1 else demo_bundle(Path("edgedl-demo"))
cameras = sys.argv[2:] or [f"synthetic://shapes?frames=150&seed={seed}" for seed in range(3)]

model = edgedl.load(bundle)
below: dict[tuple[str, int], bool] = {}  # (camera, track id) -> whether its centre was below the line
crossings = Counter()
for result in model.stream(cameras, tracker="bytetrack"):
    line = result.image.shape[0] / 2
    for det in result.detections:
        if det.track_id is not None:
            now = (det.box[1] + det.box[3]) / 2 > line
            crossings[result.source] += below.get((result.source, det.track_id)) is False and now
            below[(result.source, det.track_id)] = now
print("\n".join(f"{camera}: {count} crossed" for camera, count in crossings.items()))
