"""A camera app in twenty lines: detect objects in a live stream and print them.

    python examples/camera_app.py                                   # demo detector, synthetic camera
    python examples/camera_app.py model.edgedl csi://0              # a Jetson CSI camera
    python examples/camera_app.py model.edgedl rtsp://cam/stream    # an IP camera

Capture, preprocessing, inference and postprocessing run concurrently in background threads;
this loop only sees finished results. Ctrl-C stops it cleanly.
"""

import sys
from pathlib import Path

import edgedl
from edgedl.demo import demo_bundle

bundle = sys.argv[1] if len(sys.argv) > 1 else demo_bundle(Path("edgedl-demo"))
source = sys.argv[2] if len(sys.argv) > 2 else "synthetic://shapes?frames=150"

model = edgedl.load(bundle)
for result in model.stream(source):
    found = ", ".join(f"{d.label} {d.score:.2f} at {[round(v) for v in d.box]}" for d in result.detections)
    print(f"frame {result.frame_id}: {found or 'nothing'} ({result.latency_ms:.1f} ms, {result.dropped} dropped)")
