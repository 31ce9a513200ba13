"""Train a small PyTorch CNN, convert it to an INT8 edgedl bundle, and compare FP32 and INT8 accuracy.

    pip install "edgedl[torch]"
    python examples/pytorch_to_edge.py [OUTPUT_DIR]

The data is generated: camera-like 48x48 frames with a circle, a square or a triangle on a noisy
background. Training takes a few seconds on a laptop CPU.
"""

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import edgedl
from edgedl.preprocess import preprocess_batch

CLASSES = ["circle", "square", "triangle"]


def shapes(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` BGR uint8 frames (48x48), each with one shape, and their labels."""
    rng = np.random.default_rng(seed)
    frames, labels = [], rng.integers(0, len(CLASSES), n)
    for label in labels:
        frame = rng.integers(0, 90, (48, 48, 3), dtype=np.uint8)
        cx, cy, r = *rng.integers(16, 32, 2), int(rng.integers(8, 14))
        colour = [int(c) for c in rng.integers(120, 256, 3)]
        if label == 0:
            cv2.circle(frame, (int(cx), int(cy)), r, colour, -1)
        elif label == 1:
            cv2.rectangle(frame, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), colour, -1)
        else:
            cv2.fillPoly(frame, [np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)], colour)
        frames.append(frame)
    return frames, labels


def accuracy(model_file: Path, inputs: np.ndarray, labels: np.ndarray) -> float:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[None]})[0] for x in inputs])
    return float((logits.argmax(1) == labels).mean())


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU(),  # depthwise
        nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, len(CLASSES)))
    frames, labels = shapes(1500, seed=0)
    spec_like = {"preset": "raw01"}  # RGB, 0..1, frames stretched to the input size: what training below uses
    x = torch.from_numpy(np.stack([f[..., ::-1] for f in frames]).astype(np.float32).transpose(0, 3, 1, 2) / 255)
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(6):
        for batch in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    with tempfile.TemporaryDirectory() as calib:  # calibration frames as a camera would save them
        for i, frame in enumerate(shapes(64, seed=1)[0]):
            cv2.imwrite(f"{calib}/{i:03d}.png", frame)
        bundle = edgedl.convert(model, out / "shapes_torch.edgedl", example_inputs=torch.zeros(1, 3, 48, 48),
                                input_names=["images"], output_names=["logits"], int8=True, calib_data=calib,
                                preprocess=spec_like, labels=CLASSES, force=True)

    test_frames, test_labels = shapes(400, seed=2)  # held out: never trained or calibrated on
    inputs = preprocess_batch(bundle.manifest.preprocess, test_frames)
    check = bundle.manifest.validation["source"]
    print(f"ONNX vs PyTorch: max relative error {check['max_rel_error']:.1e}")
    print(f"FP32 accuracy {accuracy(bundle.file('fp32'), inputs, test_labels):.3f}, "
          f"INT8 accuracy {accuracy(bundle.file('int8'), inputs, test_labels):.3f} on {len(test_labels)} held-out frames")
    print("bundle:", bundle.path)


if __name__ == "__main__":
    main()
