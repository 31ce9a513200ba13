"""Regenerate edgedl/data/demo/: the small shapes classifier that ships with edgedl.

Trains tools/models.py's classifier (seed 0, two CPU threads, about ten seconds), checks it
on frames it never saw, and writes shapes_classifier.onnx, labels.txt and README.md. Same
machine and library versions, same bytes.

    python tools/make_demo.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402  (tools/models.py)

DEMO_DIR = Path(__file__).resolve().parent.parent / "edgedl" / "data" / "demo"
MODEL_NAME = "shapes_classifier.onnx"
SIZE_LIMIT = 1 << 20  # it ships inside the wheel

README = """# Demo model: shapes classifier

`shapes_classifier.onnx` is a {params}-parameter CNN (four conv-bn-relu stages, global
average pool, linear head; batch norm folded into the convs) that tells apart the four
shapes listed in `labels.txt` ({labels}).
It was trained for a few seconds on CPU on synthetic frames (a filled shape in a random
colour, size, angle and place over a noisy, textured background) and reaches
{accuracy:.1%} accuracy on {count} frames it never saw.

- input `images`: float32 `[batch, 3, 64, 64]`, RGB scaled to 0..1; frames are stretched to
  64x64 (edgedl's `raw01` preprocessing preset)
- output `logits`: float32 `[batch, 4]`, in the order of `labels.txt`

Made by `python tools/make_demo.py`, which trains `build_classifier` from `tools/models.py`
(seed 0) and rewrites this folder; `models.sample_frames("classifier", n, seed)` draws
frames like the ones it was trained on. It contains no third-party data.
"""


def accuracy(path: Path, count: int = 256) -> float:
    """Top-1 accuracy on ``count`` fresh frames, preprocessed as the ``raw01`` preset does."""
    frames, labels = models.labelled_frames("classifier", count, seed=2024)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": models.classifier_input(frames)})[0]
    return float(np.mean(logits.argmax(1) == np.array(labels)))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = onnx.load(str(models.build_classifier(Path(tmp), seed=0)))
        model.graph.name = "shapes_classifier"
        model.doc_string = "edgedl demo: 4-class shapes classifier; labels in labels.txt; see README.md"
        candidate = Path(tmp) / MODEL_NAME
        onnx.save(model, str(candidate))
        size, score = candidate.stat().st_size, accuracy(candidate)
        if size >= SIZE_LIMIT:
            raise SystemExit(f"{MODEL_NAME} is {size} bytes; the shipped demo must stay under 1 MiB")
        if score <= 0.9:
            raise SystemExit(f"the demo model scored only {score:.1%} on fresh frames; nothing written")
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
        staged = DEMO_DIR / f".{MODEL_NAME}.tmp"  # same folder, so the rename below is atomic
        shutil.copyfile(candidate, staged)
        staged.replace(DEMO_DIR / MODEL_NAME)
    (DEMO_DIR / "labels.txt").write_text("".join(f"{label}\n" for label in models.CLASSES))
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    (DEMO_DIR / "README.md").write_text(README.format(params=f"{params:,}", labels=", ".join(models.CLASSES),
                                                      accuracy=score, count=256))
    print(f"wrote {DEMO_DIR / MODEL_NAME} ({size / 1024:.0f} KiB, {score:.1%} accuracy on 256 fresh frames), "
          "labels.txt, README.md")


if __name__ == "__main__":
    main()
