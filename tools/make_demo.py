"""Regenerate edgedl/data/demo/: the small shapes classifier and shapes detector that ship with edgedl.

Trains tools/models.py's classifier (seed 0, about ten seconds) and detector (seed 0, 600
steps, about a minute on two cores), checks each on frames it never saw, and writes
shapes_classifier.onnx, shapes_detector.onnx, labels.txt and README.md. Same machine and
library versions, same bytes.

    python tools/make_demo.py                  # both
    python tools/make_demo.py detector         # one of them
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402  (tools/models.py)

from edgedl.evaluate import DetectionScore  # noqa: E402
from edgedl.postprocess import PostContext, get  # noqa: E402
from edgedl.preprocess import PRESETS, PreprocessSpec, preprocess  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parent.parent / "edgedl" / "data" / "demo"
SIZE_LIMITS = {"classifier": 1 << 20, "detector": 8 << 20}  # they ship inside the wheel
DETECTOR_STEPS = 600
FRESH_SEED = 2024  # frames no model was trained on

README = """# Demo models: shapes classifier and shapes detector

Both tell apart the four shapes listed in `labels.txt` ({labels}). They were trained for
seconds to a minute on CPU on synthetic frames (filled shapes in random colours, sizes, angles
and places over a noisy, textured background) drawn by `edgedl/sources/scenes.py`, the code
behind the `synthetic://shapes` source. They contain no third-party data.

## shapes_classifier.onnx
A {classifier_params}-parameter CNN (four conv-bn-relu stages, global average pool, linear
head; batch norm folded into the convs), {classifier_score:.1%} top-1 accuracy on 256 frames it
never saw.
- input `images`: float32 `[batch, 3, 64, 64]`, RGB scaled to 0..1; frames are stretched to
  64x64 (edgedl's `raw01` preprocessing preset)
- output `logits`: float32 `[batch, 4]`, in the order of `labels.txt`

## shapes_detector.onnx
A {detector_params}-parameter YOLOv8-style detector (strides 8, 16 and 32, decoded in the graph),
trained for {steps} steps. On 128 frames it never saw, at confidence 0.25 and IoU 0.5, it reaches
precision {detector_precision:.3f} and recall {detector_recall:.3f}.
- input `images`: float32 `[batch, 3, 256, 256]`, RGB scaled to 0..1, letterboxed with grey 114
  (edgedl's `yolo` preset)
- output `output0`: float32 `[batch, 8, 1344]`: per anchor cx, cy, w, h in input pixels, then
  four sigmoid class scores in the order of `labels.txt`
- `edgedl demo` converts it to INT8 and streams `synthetic://shapes` through it.

Made by `python tools/make_demo.py`, which trains `build_classifier` and `build_detector` from
`tools/models.py` (seed 0) and rewrites this folder; `models.sample_frames(kind, n, seed)` draws
frames like the ones they were trained on.
"""


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def classifier_accuracy(path: Path, count: int = 256) -> float:
    """Top-1 accuracy on ``count`` fresh frames, preprocessed as the ``raw01`` preset does."""
    frames, labels = models.labelled_frames("classifier", count, seed=FRESH_SEED)
    logits = _session(path).run(None, {"images": models.classifier_input(frames)})[0]
    return float(np.mean(logits.argmax(1) == np.array(labels)))


def detector_score(path: Path, count: int = 128) -> DetectionScore:
    """Precision and recall on ``count`` fresh frames through edgedl's own preprocessing and postprocessing."""
    frames, labels = models.labelled_frames("detector", count, seed=FRESH_SEED)
    spec = PreprocessSpec(width=models.DETECTOR_INPUT, height=models.DETECTOR_INPUT, **PRESETS["yolo"])
    session, decode, score = _session(path), get("yolov8"), DetectionScore()
    for frame, truth in zip(frames, labels, strict=True):
        tensor, geometry = preprocess(spec, frame)
        outputs = dict(zip(["output0"], session.run(None, {"images": tensor}), strict=True))
        prediction = decode(outputs, PostContext(geometry=geometry, input_size=(spec.width, spec.height),
                                                 labels=list(models.CLASSES)))
        score.add(prediction.detections, truth)
    return score


def _ship(built: Path, name: str, doc: str, check: Callable[[Path], float], minimum: float, kind: str) -> onnx.ModelProto:
    """Name and document the model, check its size and accuracy, then atomically replace the shipped copy."""
    model = onnx.load(str(built))
    model.graph.name = Path(name).stem
    model.doc_string = doc
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / name
        onnx.save(model, str(candidate))
        size, value = candidate.stat().st_size, check(candidate)
        if size >= SIZE_LIMITS[kind]:
            raise SystemExit(f"{name} is {size} bytes; the shipped demo {kind} must stay under {SIZE_LIMITS[kind]} bytes")
        if value <= minimum:
            raise SystemExit(f"the demo {kind} scored only {value:.3f} on fresh frames; nothing written")
        staged = DEMO_DIR / f".{name}.tmp"  # same folder, so the rename below is atomic
        shutil.copyfile(candidate, staged)
        staged.replace(DEMO_DIR / name)
    print(f"wrote {DEMO_DIR / name} ({size / 1024:.0f} KiB, score {value:.3f} on fresh frames)")
    return model


def _params(model: onnx.ModelProto) -> str:
    return f"{sum(int(np.prod(init.dims)) for init in model.graph.initializer):,}"


def main() -> None:
    wanted = set(sys.argv[1:]) or {"classifier", "detector"}
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if "classifier" in wanted:
            _ship(models.build_classifier(Path(tmp), seed=0), "shapes_classifier.onnx",
                  "edgedl demo: 4-class shapes classifier; labels in labels.txt; see README.md",
                  classifier_accuracy, 0.9, "classifier")
        if "detector" in wanted:
            _ship(models.build_detector(Path(tmp), seed=0, steps=DETECTOR_STEPS), "shapes_detector.onnx",
                  "edgedl demo: 4-class YOLOv8-style shapes detector; labels in labels.txt; see README.md",
                  lambda path: detector_score(path).recall, 0.8, "detector")
    classifier = onnx.load(str(DEMO_DIR / "shapes_classifier.onnx"))
    detector = onnx.load(str(DEMO_DIR / "shapes_detector.onnx"))
    detection = detector_score(DEMO_DIR / "shapes_detector.onnx")
    (DEMO_DIR / "labels.txt").write_text("".join(f"{label}\n" for label in models.CLASSES))
    (DEMO_DIR / "README.md").write_text(README.format(
        labels=", ".join(models.CLASSES), classifier_params=_params(classifier),
        classifier_score=classifier_accuracy(DEMO_DIR / "shapes_classifier.onnx"), detector_params=_params(detector),
        steps=DETECTOR_STEPS, detector_precision=detection.precision, detector_recall=detection.recall))
    print("wrote labels.txt and README.md")


if __name__ == "__main__":
    main()
