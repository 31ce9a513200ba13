"""Classify every image in a folder and print the top classes.

    python examples/classify_folder.py                              # demo classifier on generated images
    python examples/classify_folder.py model.edgedl photos/         # your bundle and images

An image folder (or a glob such as 'photos/*.jpg') is a source like a camera, so the same
stream API serves it; images are read in name order and none is skipped.
"""

import sys
from pathlib import Path

import edgedl

if len(sys.argv) > 2:
    bundle, folder = sys.argv[1], sys.argv[2]
else:  # the shipped classifier, and a folder of synthetic shapes to classify
    import cv2

    from edgedl.demo import DEMO_DIR
    from edgedl.sources import open_source

    folder = Path("edgedl-demo/shapes")
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(8):  # one synthetic stream keeps its shapes, so each image comes from its own seed
        for frame in open_source(f"synthetic://shapes?width=96&height=96&objects=1&fps=0&frames=1&seed={seed}"):
            cv2.imwrite(str(folder / f"shape{seed}.png"), frame.image)
    bundle = edgedl.convert(DEMO_DIR / "shapes_classifier.onnx", "edgedl-demo/shapes_classifier.edgedl",
                            preprocess={"preset": "raw01"}, labels=DEMO_DIR / "labels.txt", force=True).path

model = edgedl.load(bundle)
for result in model.stream(folder, top_k=2):
    print(result.frame.source, ", ".join(f"{c.label} {c.score:.2f}" for c in result.classes))
