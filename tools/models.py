"""Small vision models, trained for real on CPU in seconds, for tests, benchmarks and the demo.

Every model learns from synthetic scenes drawn with OpenCV (seeded, so the same seed gives the
same pixels): filled circles, squares, triangles and crosses in random colours, sizes, angles
and places over a noisy, textured background. Training on real-looking data matters: INT8
calibration and validation only mean something when activations look like a trained network's.
The drawing primitives live in edgedl/sources/scenes.py, shared with the ``synthetic://shapes``
source, so the demo detector sees at run time the kind of frame it learned from.

    build_classifier(out_dir, seed=0) -> Path   CNN, images [batch,3,64,64] RGB 0..1 -> logits [batch,4]
    build_detector(out_dir, seed=0)   -> Path   YOLOv8-style, images [batch,3,256,256] -> output0 [batch,8,1344]
    build_fragile(out_dir, seed=0)    -> Path   classifier that per-tensor INT8 wrecks (see build_fragile)
    build_yolo_shaped(out_dir, size)  -> Path   untrained, YOLOv8n widths, 80 classes, [batch,84,anchors] (benchmarks)
    sample_frames(kind, n, seed)      -> list of BGR uint8 camera frames the model of ``kind`` expects
    labelled_frames(kind, n, seed)    -> the same frames and their labels

Frames are what a camera would give, not model inputs: classifier frames are 96x96 (the model
stretches them to 64x64, edgedl's ``raw01`` preset); detector frames are 320x240 (letterboxed
to 256x256 with grey 114 padding, the ``yolo`` preset).

Run ``python tools/models.py`` to build all three and print sizes, accuracy and CPU latency.
Torch is imported inside the builders only, so frame generation needs just numpy and OpenCV.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgedl.sources.scenes import CLASSES, DETECTION_FRAME, background, draw, finish, noise_bank, place

if TYPE_CHECKING:
    import onnx
    import torch

OPSET = 17
THREADS = 2  # training and export run on two cores; results are reproducible for a fixed thread count

CLASSIFIER_FRAME = (96, 96)  # width, height of classifier camera frames
CLASSIFIER_INPUT = 64
DETECTOR_FRAME = DETECTION_FRAME
DETECTOR_INPUT = 256
DETECTOR_STRIDES = (8, 16, 32)
LETTERBOX_PAD = 114

#: Nodes of the fragile model that must stay in float for INT8 to be accurate (see build_fragile).
FRAGILE_CULPRITS: tuple[str, ...] = ("/down3/conv/Conv", "/conv3/conv/Conv")
FRAGILE_SCALE = 1000.0

_KINDS = ("classifier", "detector", "fragile")


# --------------------------------------------------------------------------- scenes (drawn by edgedl/sources/scenes.py)


def _shape_frame(rng: np.random.Generator, noise: np.ndarray) -> tuple[np.ndarray, int]:
    w, h = CLASSIFIER_FRAME
    canvas = background(rng, h, w)
    cls = int(rng.integers(len(CLASSES)))
    r = rng.uniform(0.2, 0.4) * min(w, h)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    draw(canvas, rng, cls, cx, cy, r)
    return finish(rng, canvas, noise), cls


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def scene_frame(rng: np.random.Generator, noise: np.ndarray, most: int, pick: Callable[[np.random.Generator], int],
                paint: Callable[..., np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A DETECTOR_FRAME-sized frame with one to ``most`` objects, each of class ``pick(rng)`` drawn by
    ``paint(canvas, rng, cls, cx, cy, r)`` (which returns its box); labels ``[k, 5]``: class, x1, y1, x2, y2."""
    w, h = DETECTOR_FRAME
    canvas = background(rng, h, w)
    boxes: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, most + 1))):
        spot = place(rng, w, h, boxes)
        if spot is None:  # no room left for this object
            continue
        cx, cy, r = spot
        cls = pick(rng)
        boxes.append(np.array([cx - r, cy - r, cx + r, cy + r]))
        labels.append(np.concatenate([[cls], paint(canvas, rng, cls, cx, cy, r)]))
    return finish(rng, canvas, noise), np.array(labels, np.float32).reshape(-1, 5)


def _detection_frame(rng: np.random.Generator, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A frame with one to four of edgedl's scene shapes, classes equally likely."""
    return scene_frame(rng, noise, 4, lambda r: int(r.integers(len(CLASSES))), draw)


def _frames(kind: str, n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[Any]]:
    if kind not in _KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(_KINDS)}")
    frame = _detection_frame if kind == "detector" else _shape_frame
    noise = noise_bank(rng, DETECTOR_FRAME[1], DETECTOR_FRAME[0])  # one bank serves both frame sizes
    pairs = [frame(rng, noise) for _ in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def labelled_frames(kind: str, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[Any]]:
    """``n`` BGR uint8 frames for model ``kind`` and their labels.

    Classifier and fragile frames: 96x96, label = class index into :data:`CLASSES`.
    Detector frames: 320x240, label = float32 ``[k, 5]`` rows of class, x1, y1, x2, y2 (frame pixels).
    Frame ``i`` depends only on ``seed`` and ``i``, not on ``n``.
    """
    return _frames(kind, n, np.random.default_rng(seed))


def sample_frames(kind: str, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` BGR uint8 frames like the ones model ``kind`` was trained on, for calibration and validation."""
    return labelled_frames(kind, n, seed)[0]


def _training_rng(seed: int, purpose: int) -> np.random.Generator:
    # A different stream from sample_frames(kind, n, seed), so test frames are never training frames.
    return np.random.default_rng([seed, 0x5EED, purpose])


# --------------------------------------------------------------------------- preprocessing (as edgedl presets do)


def classifier_input(frames: list[np.ndarray], size: int = CLASSIFIER_INPUT) -> np.ndarray:
    """The ``raw01`` preset: stretch to ``size``, BGR->RGB, /255, NCHW float32."""
    batch = [cv2.cvtColor(cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
             for f in frames]
    return (np.stack(batch).astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()


def letterbox(frame: np.ndarray, size: int = DETECTOR_INPUT) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The ``yolo`` preset's geometry: aspect-preserving resize, pad 114; returns image, scale, (dx, dy)."""
    h, w = frame.shape[:2]
    s = min(size / w, size / h)
    nw, nh = round(w * s), round(h * s)
    dx, dy = (size - nw) // 2, (size - nh) // 2
    out = np.full((size, size, 3), LETTERBOX_PAD, np.uint8)
    out[dy : dy + nh, dx : dx + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, s, (dx, dy)


def detector_input(frames: list[np.ndarray]) -> np.ndarray:
    """The ``yolo`` preset: letterbox to 256, BGR->RGB, /255, NCHW float32."""
    batch = [cv2.cvtColor(letterbox(f)[0], cv2.COLOR_BGR2RGB) for f in frames]
    return (np.stack(batch).astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()


# --------------------------------------------------------------------------- networks and training helpers


def _torch():
    """Import torch once, pinned to the thread count that makes builds reproducible."""
    import torch

    torch.set_num_threads(THREADS)
    torch.set_flush_denormal(True)  # tiny gradients late in training otherwise slow CPU math several-fold
    return torch


def _networks():
    """Module classes, defined on first use so importing this file does not import torch."""
    torch = _torch()
    nn = torch.nn

    class ConvBNAct(nn.Module):
        """Conv, batch norm, activation; :meth:`fuse` folds the norm into the conv for export."""

        def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, act: type = nn.ReLU) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c_out)
            self.act = act()

        def forward(self, x):
            return self.act(self.bn(self.conv(x)))

        def fuse(self) -> None:
            self.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(self.conv, self.bn)
            self.bn = nn.Identity()

    class Classifier(nn.Module):
        """Four stages of conv-bn-relu (each opens with a strided conv), global average pool, linear.

        The 32x32 stage has one conv, the others two: a second conv there would double the cost.
        """

        def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 64), classes: int = len(CLASSES)) -> None:
            super().__init__()
            w = widths
            self.stem = ConvBNAct(3, w[0], stride=2)
            self.down2, self.conv2 = ConvBNAct(w[0], w[1], stride=2), ConvBNAct(w[1], w[1])
            self.down3, self.conv3 = ConvBNAct(w[1], w[2], stride=2), ConvBNAct(w[2], w[2])
            self.down4, self.conv4 = ConvBNAct(w[2], w[3], stride=2), ConvBNAct(w[3], w[3])
            self.head = nn.Linear(w[3], classes)

        def forward(self, x):
            for layer in (self.stem, self.down2, self.conv2, self.down3, self.conv3, self.down4, self.conv4):
                x = layer(x)
            return self.head(x.mean((2, 3)))

    class Bottleneck(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.cv1 = ConvBNAct(c, c, act=nn.SiLU)
            self.cv2 = ConvBNAct(c, c, act=nn.SiLU)

        def forward(self, x):
            return x + self.cv2(self.cv1(x))

    class C2f(nn.Module):
        """YOLOv8's C2f: split, a chain of residual bottlenecks, concatenate every step, mix."""

        def __init__(self, c_in: int, c_out: int, n: int = 1) -> None:
            super().__init__()
            self.hidden = c_out // 2
            self.cv1 = ConvBNAct(c_in, 2 * self.hidden, 1, act=nn.SiLU)
            self.blocks = nn.ModuleList(Bottleneck(self.hidden) for _ in range(n))
            self.cv2 = ConvBNAct((2 + n) * self.hidden, c_out, 1, act=nn.SiLU)

        def forward(self, x):
            parts = list(self.cv1(x).chunk(2, 1))
            for block in self.blocks:
                parts.append(block(parts[-1]))
            return self.cv2(torch.cat(parts, 1))

    class Detector(nn.Module):
        """A tiny YOLOv8: strided SiLU convs and C2f blocks, a top-down neck, heads at strides 8/16/32.

        Boxes are left/top/right/bottom distances (softplus, in strides) from each anchor point,
        decoded in the graph like YOLOv8's export: ``[N, 4 + classes, anchors]`` holding
        cx, cy, w, h in input pixels, then per-class sigmoid scores.
        """

        def __init__(self, classes: int = len(CLASSES), size: int = DETECTOR_INPUT,
                     widths: tuple[int, ...] = (16, 32, 64, 128, 256)) -> None:
            super().__init__()
            w = widths
            self.stem = ConvBNAct(3, w[0], stride=2, act=nn.SiLU)
            self.stage2 = nn.Sequential(ConvBNAct(w[0], w[1], stride=2, act=nn.SiLU), C2f(w[1], w[1]))
            self.stage3 = nn.Sequential(ConvBNAct(w[1], w[2], stride=2, act=nn.SiLU), C2f(w[2], w[2], 2))
            self.stage4 = nn.Sequential(ConvBNAct(w[2], w[3], stride=2, act=nn.SiLU), C2f(w[3], w[3], 2))
            self.stage5 = nn.Sequential(ConvBNAct(w[3], w[4], stride=2, act=nn.SiLU), C2f(w[4], w[4]))
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.neck4 = C2f(w[4] + w[3], w[3])
            self.neck3 = C2f(w[3] + w[2], w[2])
            self.heads = nn.ModuleList(
                nn.Sequential(ConvBNAct(c, 64, act=nn.SiLU), ConvBNAct(64, 64, act=nn.SiLU), nn.Conv2d(64, 4 + classes, 1))
                for c in (w[2], w[3], w[4]))
            points, strides = [], []
            for s in DETECTOR_STRIDES:
                n = size // s
                ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
                points.append(np.stack([xs.ravel(), ys.ravel()]) * s + s / 2)
                strides.append(np.full(n * n, s))
            self.register_buffer("anchors", torch.tensor(np.concatenate(points, 1), dtype=torch.float32))
            self.register_buffer("strides", torch.tensor(np.concatenate(strides), dtype=torch.float32))
            with torch.no_grad():  # start with low scores, as YOLO does, so early training is stable
                for head in self.heads:
                    head[-1].bias[4:] = -4.0

        def raw(self, x):
            """Undecoded ``[N, 4 + classes, anchors]``: distance logits and class logits."""
            p3 = self.stage3(self.stage2(self.stem(x)))
            p4 = self.stage4(p3)
            p5 = self.stage5(p4)
            n4 = self.neck4(torch.cat([self.up(p5), p4], 1))
            n3 = self.neck3(torch.cat([self.up(n4), p3], 1))
            return torch.cat([head(f).flatten(2) for head, f in zip(self.heads, (n3, n4, p5), strict=True)], 2)

        def boxes(self, raw, index=None):
            """Corner boxes ``[N, 4, anchors]`` (x1, y1, x2, y2 in input pixels) from raw outputs.

            ``index`` ``[N, anchors]`` picks, per image, the anchors ``raw`` covers when it came
            from a crop of the input.
            """
            anchors, strides = (self.anchors, self.strides) if index is None else \
                (self.anchors[:, index].transpose(0, 1), self.strides[index].unsqueeze(1))
            dist = nn.functional.softplus(raw[:, :4]) * strides
            return torch.cat([anchors - dist[:, :2], anchors + dist[:, 2:]], 1)

        def forward(self, x):
            raw = self.raw(x)
            corners = self.boxes(raw)
            centre = (corners[:, :2] + corners[:, 2:]) / 2
            size = corners[:, 2:] - corners[:, :2]
            return torch.cat([centre, size, raw[:, 4:].sigmoid()], 1)

    return Classifier, Detector


def _fuse_all(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode with every batch norm folded into its conv: the graph a deployment export has."""
    model.eval()
    for module in model.modules():
        if hasattr(module, "fuse") and hasattr(module, "bn"):
            module.fuse()
    return model


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path, output: str) -> Path:
    """Write ``model`` to ONNX (opset 17, dynamic batch ``batch``), atomically.

    The TorchScript exporter (``dynamo=False``): in torch 2.13 the dynamo exporter only emits
    opset 18, its down-conversion to 17 fails on ReduceMean, it names nodes ``node_Conv_11``
    instead of by module path, and it takes ~2.5 s even for a tiny model.
    """
    torch = _torch()
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=[output],
                          dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    # The exporter names traced dims ("Concatoutput0_dim_1"); all but the batch are fixed, so say so.
    proto = onnx.load(str(tmp))
    with torch.no_grad():
        shape = model(example).shape
    for dim, size in zip(proto.graph.output[0].type.tensor_type.shape.dim[1:], shape[1:], strict=True):
        dim.Clear()
        dim.dim_value = size
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def _train_classifier(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, max_epochs: int = 8,
                      target: float = 0.95, lr: float = 4e-3) -> float:
    """Adam, one-cycle schedule, on the first 85%; stops once the held-out 15% reach ``target``."""
    torch = _torch()
    started = time.perf_counter()
    # channels-last runs the oneDNN convolutions about 30% faster on CPU
    model.to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(np.asarray(y, np.int64))
    split, batch = int(len(xt) * 0.85), 64
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max_epochs * math.ceil(split / batch),
                                                pct_start=0.2)
    gen = torch.Generator().manual_seed(0)
    accuracy, epochs = 0.0, 0
    while accuracy < target and epochs < max_epochs:
        model.train()
        for idx in torch.randperm(split, generator=gen).split(batch):
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(xt[split:]).argmax(1) == yt[split:]).float().mean().item()
        epochs += 1
    model.to(memory_format=torch.contiguous_format)
    print(f"classifier: held-out accuracy {accuracy:.3f} after {epochs} epoch(s) on {split} frames "
          f"({time.perf_counter() - started:.1f}s)")
    return accuracy


def _cached(out_dir: Path, name: str, seed: int) -> tuple[Path, bool]:
    path = Path(out_dir) / f"{name}-seed{seed}.onnx"
    return path, path.is_file()


# --------------------------------------------------------------------------- builders


def build_classifier(out_dir: Path, seed: int = 0) -> Path:
    """Train the 4-class shapes CNN (a few seconds) and export ``images`` [batch,3,64,64] -> ``logits`` [batch,4].

    Input: RGB scaled to 0..1, frames stretched to 64x64 (edgedl's ``raw01`` preset).
    Raises ``RuntimeError`` if held-out accuracy stays below 90%. Reuses an earlier build in ``out_dir``.
    """
    path, done = _cached(out_dir, "classifier", seed)
    if done:
        return path
    torch = _torch()
    torch.manual_seed(seed)
    frames, labels = _frames("classifier", 3000, _training_rng(seed, 1))
    x, y = classifier_input(frames), np.array(labels)
    classifier, _ = _networks()
    model = classifier()
    accuracy = _train_classifier(model, x, y)
    if accuracy <= 0.9:
        raise RuntimeError(f"classifier trained to only {accuracy:.1%} held-out accuracy (needs > 90%)")
    return _export(_fuse_all(model), torch.zeros(1, 3, CLASSIFIER_INPUT, CLASSIFIER_INPUT), path, "logits")


def _detector_targets(boxes: np.ndarray, classes: np.ndarray, anchors: np.ndarray,
                      strides: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-anchor training targets for one image: positive mask, class index, box (x1, y1, x2, y2).

    Each object goes to the level that suits its size (FCOS-style ranges) and to the anchor
    points of that level near its centre and inside it; when two objects claim a point, the
    smaller one keeps it.
    """
    count = anchors.shape[1]
    pos, cls, box = np.zeros(count, bool), np.zeros(count, np.int64), np.zeros((count, 4), np.float32)
    for i in np.argsort(-np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)):
        x1, y1, x2, y2 = boxes[i]
        side = max(x2 - x1, y2 - y1)
        level = DETECTOR_STRIDES[0] if side < 32 else DETECTOR_STRIDES[1] if side < 64 else DETECTOR_STRIDES[2]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        on_level = strides == level
        near = (np.abs(anchors[0] - cx) < 1.5 * level) & (np.abs(anchors[1] - cy) < 1.5 * level)
        inside = (anchors[0] > x1) & (anchors[0] < x2) & (anchors[1] > y1) & (anchors[1] < y2)
        chosen = on_level & near & inside
        if not chosen.any():
            chosen = np.arange(count) == np.where(on_level, np.hypot(anchors[0] - cx, anchors[1] - cy), np.inf).argmin()
        pos[chosen], cls[chosen], box[chosen] = True, classes[i], boxes[i]
    return pos, cls, box


def detector_step(model: Any, opt: Any, sched: Any, rng: np.random.Generator, data: tuple[Any, ...],
                  index: dict[tuple[int, int], Any], crop: int, batch: int) -> tuple[Any, Any, Any]:
    """One training step of a YOLOv8-style detector on ``batch`` crops of ``crop`` pixels; (loss, class, box) losses.

    ``data`` is (letterboxed RGB images, boxes, positive mask, class targets, box targets) per image; each crop is
    centred (as far as the stride grid allows) on one of its image's objects; ``index`` maps a crop's origin to the
    anchors it holds.
    """
    torch = _torch()
    images, boxes, pos, cls, box = data
    size, last = images.shape[1], DETECTOR_STRIDES[-1]
    picks = rng.integers(0, len(images), batch)
    centres = [boxes[i][rng.integers(len(boxes[i]))].reshape(2, 2).mean(0) if len(boxes[i]) else
               np.full(2, size / 2) for i in picks]
    origin = [tuple(int(np.clip(round((c - crop / 2) / last) * last, 0, size - crop)) for c in ctr) for ctr in centres]
    x = torch.stack([images[i, oy : oy + crop, ox : ox + crop] for i, (ox, oy) in zip(picks, origin, strict=True)])
    x = (x.permute(0, 3, 1, 2).float() / 255).contiguous(memory_format=torch.channels_last)
    idx = torch.stack([index[o] for o in origin])
    rows = torch.from_numpy(picks)[:, None]
    p, c, b = pos[rows, idx], cls[rows, idx], box[rows, idx]
    raw = model.raw(x)
    npos = max(int(p.sum()), 1)
    cls_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        raw[:, 4:].transpose(1, 2), c, reduction="sum") / npos
    box_loss = _giou_loss(model.boxes(raw, idx).transpose(1, 2)[p], b[p])
    loss = cls_loss + 2.0 * box_loss
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return loss, cls_loss, box_loss


def _crop_anchor_index(ox: int, oy: int, crop: int, size: int = DETECTOR_INPUT) -> np.ndarray:
    """Indices into the full image's anchors of the anchors of the ``crop`` square at ``(ox, oy)``.

    Offsets are multiples of the largest stride, so every level's grid lines up with the full image's.
    """
    index, start = [], 0
    for s in DETECTOR_STRIDES:
        n, m = size // s, crop // s
        rows, cols = np.meshgrid(np.arange(m) + oy // s, np.arange(m) + ox // s, indexing="ij")
        index.append(start + (rows * n + cols).ravel())
        start += n * n
    return np.concatenate(index)


def _giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - GIoU`` of corner boxes ``[k, 4]``."""
    torch = _torch()
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    lt, rb = torch.max(pred[:, :2], target[:, :2]), torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = area(pred) + area(target) - inter
    hull = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).prod(1)
    return (1 - inter / union + (hull - union) / hull).mean()


def _detector_recall(model: torch.nn.Module, seed: int, n: int = 48) -> float:
    """Share of objects in ``n`` unseen frames matched by a box with IoU > 0.5 and its class scored > 0.25."""
    torch = _torch()
    frames, labels = _frames("detector", n, _training_rng(seed, 3))
    with torch.no_grad():
        out = model(torch.from_numpy(detector_input(frames))).numpy()
    scale, (dx, dy) = letterbox(frames[0])[1:]
    found = total = 0
    for pred, lab in zip(out, labels, strict=True):
        xy, wh = pred[:2].T, pred[2:4].T
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
        for row in lab:
            gt = row[1:] * scale + (dx, dy, dx, dy)
            hits = (_iou(gt, boxes) > 0.5) & (pred[4 + int(row[0])] > 0.25)
            found += bool(hits.any())
            total += 1
    return found / max(total, 1)


def build_detector(out_dir: Path, seed: int = 0, steps: int = 200) -> Path:
    """Train a tiny YOLOv8-style detector briefly and export ``images`` [batch,3,256,256] -> ``output0``.

    ``output0`` is ``[batch, 8, 1344]`` as YOLOv8 exports it: per anchor cx, cy, w, h (input
    pixels) and four sigmoid class scores (:data:`CLASSES`), anchors from strides 8, 16 and 32.
    Input: RGB 0..1, letterboxed with grey 114 (edgedl's ``yolo`` preset). About 1.7 M
    parameters and 0.45 GMAC per image: big enough for INT8-vs-FP32 timing to mean something.

    Training sees 128x128 crops of the letterboxed images (a quarter of the compute; the network
    is fully convolutional, so objects keep their size): ``steps`` batches of 16, about 20 s on
    two cores. Accuracy is a side effect (the printed recall); the point is realistic
    activations and confident, well-placed boxes. Reuses an earlier build in ``out_dir``.
    """
    path, done = _cached(out_dir, "detector", seed)
    if done:
        return path
    torch = _torch()
    torch.manual_seed(seed)
    started = time.perf_counter()
    frames, labels = _frames("detector", 384, _training_rng(seed, 2))
    _, detector = _networks()
    model = detector().to(memory_format=torch.channels_last)
    anchors, strides = model.anchors.numpy(), model.strides.numpy()
    scale, (dx, dy) = letterbox(frames[0])[1:]
    boxes = [lab[:, 1:] * scale + (dx, dy, dx, dy) for lab in labels]
    targets = [_detector_targets(b, lab[:, 0].astype(np.int64), anchors, strides)
               for b, lab in zip(boxes, labels, strict=True)]
    images = torch.from_numpy(np.stack([cv2.cvtColor(letterbox(f)[0], cv2.COLOR_BGR2RGB) for f in frames]))
    pos = torch.from_numpy(np.stack([t[0] for t in targets]))
    cls = torch.nn.functional.one_hot(torch.from_numpy(np.stack([t[1] for t in targets])), len(CLASSES)).float()
    cls = cls * pos[..., None]
    box = torch.from_numpy(np.stack([t[2] for t in targets]))

    crop, batch, last = 128, 16, DETECTOR_STRIDES[-1]
    offsets = range(0, DETECTOR_INPUT - crop + 1, last)
    index = {(ox, oy): torch.from_numpy(_crop_anchor_index(ox, oy, crop)) for ox in offsets for oy in offsets}
    rng = _training_rng(seed, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    model.train()
    for step in range(steps):
        loss, cls_loss, box_loss = detector_step(model, opt, sched, rng, (images, boxes, pos, cls, box), index, crop, batch)
        if step % 60 == 0 or step == steps - 1:
            print(f"detector: step {step:3d} loss {loss.item():.3f} (cls {cls_loss.item():.3f}, "
                  f"1-GIoU {box_loss.item():.3f}) {time.perf_counter() - started:.1f}s")
    model.to(memory_format=torch.contiguous_format)
    _fuse_all(model)
    print(f"detector: held-out recall (IoU > 0.5, right class, score > 0.25) {_detector_recall(model, seed):.2f}")
    return _export(model, torch.zeros(1, 3, DETECTOR_INPUT, DETECTOR_INPUT), path, "output0")


def _channel_peaks(model: onnx.ModelProto, tensor: str, feed: np.ndarray) -> np.ndarray:
    """Per-channel maximum of an intermediate NCHW ``tensor`` over the batch ``feed``."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([tensor], {"images": feed})[0].max(axis=(0, 2, 3))


def build_yolo_shaped(out_dir: Path, size: int, classes: int = 80, seed: int = 0) -> Path:
    """An untrained detector with YOLOv8n's widths and output layout for speed tests: ``[batch, 4 + classes, anchors]``.

    ``size`` 320 gives 2100 anchors and 640 gives 8400, as YOLOv8 exports them. Speed does not
    depend on training; class scores start low (bias -4, as YOLO initialises them), so a
    realistic handful of boxes reaches NMS rather than every anchor.
    """
    path = Path(out_dir) / f"yolo-shaped-{size}-seed{seed}.onnx"
    if path.is_file():
        return path
    torch = _torch()
    torch.manual_seed(seed)
    _, detector = _networks()
    model = _fuse_all(detector(classes=classes, size=size))
    return _export(model, torch.zeros(1, 3, size, size), path, "output0")


def build_fragile(out_dir: Path, seed: int = 0) -> Path:
    """The shapes classifier with one activation channel widened 1000x: per-tensor INT8 wrecks it.

    Same interface as :func:`build_classifier` (``images`` [batch,3,64,64] -> ``logits`` [batch,4])
    and the same float function: the output channel of ``/down3/conv/Conv`` with the largest
    activations has its weights and bias multiplied by :data:`FRAGILE_SCALE` (1000), and the
    matching input weights of the next conv, ``/conv3/conv/Conv``, are divided by it. ReLU
    commutes with a positive scale, so the logits do not change, but the feature map between
    the two convs now has one channel ~1000x the range of the other 63 (an outlier channel, as
    real networks grow). A per-tensor activation scale fitted to it rounds the small channels,
    which carry the information, to zero; and ``/conv3/conv/Conv``'s per-output-channel weight
    scale rounds the shrunken weights to zero.

    The culprits are :data:`FRAGILE_CULPRITS`, ``/down3/conv/Conv`` and ``/conv3/conv/Conv``:
    both must stay in float (excluding either alone still quantizes the wide tensor). Measured
    with ONNX Runtime ``quantize_static`` (QDQ, uint8 activations, per-channel int8 weights,
    MinMax, 64 calibration frames), logits cosine vs FP32 on 64 unseen frames: about -0.14
    quantizing everything, about 0.9999 with both culprits excluded (see
    tests/test_models_fixture.py). Trains the classifier first unless ``out_dir`` has it.
    """
    import onnx
    from onnx import numpy_helper

    path, done = _cached(out_dir, "fragile", seed)
    if done:
        return path
    model = onnx.load(str(build_classifier(out_dir, seed)))
    nodes = {node.name: node for node in model.graph.node}
    producer, consumer = (nodes[name] for name in FRAGILE_CULPRITS)
    feed = classifier_input(_frames("classifier", 64, _training_rng(seed, 5))[0])
    channel = int(_channel_peaks(model, consumer.input[0], feed).argmax())  # widen the already-widest channel
    weights = {init.name: init for init in model.graph.initializer}
    for name, where, factor in ((producer.input[1], np.s_[channel], FRAGILE_SCALE),
                                (producer.input[2], np.s_[channel], FRAGILE_SCALE),
                                (consumer.input[1], np.s_[:, channel], 1 / FRAGILE_SCALE)):
        array = numpy_helper.to_array(weights[name]).copy()
        array[where] *= factor
        weights[name].CopyFrom(numpy_helper.from_array(array, name))
    model.graph.name = "shapes_classifier_fragile"
    onnx.checker.check_model(model)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- report


def _latency_ms(path: Path, feed: np.ndarray, rounds: int = 50) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(5):
        session.run(None, {"images": feed})
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        session.run(None, {"images": feed})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main() -> None:
    """Build all three models into ./build/models and print sizes and single-image CPU latency."""
    out = Path("build/models")
    for kind, builder, inputs in (("classifier", build_classifier, classifier_input),
                                  ("detector", build_detector, detector_input),
                                  ("fragile", build_fragile, classifier_input)):
        start = time.perf_counter()
        path = builder(out)
        feed = inputs(sample_frames(kind, 1, seed=5))
        print(f"{kind}: {path} {path.stat().st_size / 1024:.0f} KiB, built in {time.perf_counter() - start:.1f}s, "
              f"ORT CPU latency {_latency_ms(path, feed):.2f} ms/image ({THREADS} threads)")


if __name__ == "__main__":
    main()
