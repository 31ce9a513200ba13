"""Hard INT8 fixtures: small models, trained for real, that plain post-training quantization breaks.

Tiny models trained for seconds quantize easily and hide what goes wrong with real ones. These two
carry the two failures real deployments meet, and :func:`plain_ptq` (ONNX Runtime ``quantize_static``
as its documentation shows it: QDQ, per-channel int8 weights, uint8 activations, MinMax) shows both.

``hard-detector`` (:func:`build_hard_detector`): tools/models.py's YOLOv8-style network (SiLU, C2f
blocks, top-down neck, heads at strides 8/16/32) at 320x320 with ten shape classes drawn with skewed
frequencies (the rarest three are 3-5% of objects, so a small calibration set holds a handful of
each). Its one output ``output0`` ``[batch, 14, 2100]`` is YOLOv8's: box centre and size in input
pixels (0..320) and the ten sigmoid class scores (0..1) concatenated in one tensor. One per-tensor
uint8 scale for that tensor is ~1.3 px a step, so every score below ~0.6 becomes 0 or 1.3.

``text-segmenter`` (:func:`build_text_segmenter`): a MobileNetV3/PP-LCNet-style network (depthwise
separable convs, hard-swish, squeeze-excitation, a learnable per-channel scale and bias after every
activation, as PP-LCNetV3's learnable affine blocks) with a DB-style head (FPN neck, two transposed
convs, sigmoid) giving a text probability map ``prob`` ``[batch, 1, 256, 256]``, trained on text
drawn with ``cv2.putText`` over textured backgrounds with non-text distractors. After training, a few
activation channels are made to dwarf the rest (see :data:`OUTLIER_SCALE`), as they grow in real
networks whose affine follows the activation with no norm after it; the float function is unchanged.

Both train single-threaded on the CPU in about two minutes each (seeded and reproducible) and are
cached under :data:`CACHE` (``build/hard-models`` in the repository, ignored by git) in files named by
seed and :data:`RECIPE`, so tests and benchmarks train them once and a new recipe retrains.

    build_hard_detector(out_dir=CACHE, seed=0)  -> Path   images [batch,3,320,320] -> output0 [batch,14,2100]
    build_text_segmenter(out_dir=CACHE, seed=0) -> Path   images [batch,3,256,256] -> prob [batch,1,256,256]
    FIXTURES[kind]                                        name, builder, preprocessing, frame drawing, scoring
    sample_frames(kind, n, seed) / model_inputs(kind, frames)
    plain_ptq(model, out, calibration)           -> Path  ORT quantize_static, the plain baseline
    score(kind, reference, outputs)               -> dict  the accuracy measures of tools/bench_quantizers.py

Run ``python tools/hard_models.py`` to build both and print how plain PTQ fares on each.
"""

from __future__ import annotations

import contextlib
import string
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402  (tools/models.py: the YOLO-style network, its training helpers and export)

from edgedl.options import PreprocessOptions  # noqa: E402
from edgedl.preprocess import PreprocessSpec, preprocess  # noqa: E402
from edgedl.sources.scenes import (  # noqa: E402
    DETECTION_FRAME,
    background,
    contrasting_colour,
    fill_shape,
    finish,
    noise_bank,
    shape_points,
)

CACHE = Path(__file__).resolve().parent.parent / "build" / "hard-models"
#: Part of every cached file's name: bump it whenever a change here changes what a builder makes.
RECIPE = 2

# --------------------------------------------------------------------------- detector: ten shapes, skewed frequencies

DETECTOR_SIZE = 320
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring", "diamond", "bar", "ell", "arrow")
#: How often each shape is drawn: common shapes dominate, the last three are rare.
SHAPE_FREQUENCY = np.array([0.19, 0.17, 0.14, 0.12, 0.1, 0.08, 0.08, 0.05, 0.04, 0.03])
#: An FP32 class score above this is a "confident" one (YOLO's default confidence threshold).
CONFIDENT = 0.25
#: A confident score is kept when INT8 gives it within this much.
SCORE_TOLERANCE = 0.1

# --------------------------------------------------------------------------- segmenter: text over texture

SEGMENTER_SIZE = 256
#: The probability above which the segmenter says "text" (DB's binarisation threshold in PP-OCR).
TEXT_THRESHOLD = 0.3
#: How much wider the forced outlier channels are than before (their consumers' weights shrink as much).
OUTLIER_SCALE = 128.0
#: (block, channels) whose depthwise-conv output (after the affine) is widened by OUTLIER_SCALE.
OUTLIER_SITES: tuple[tuple[int, int], ...] = ((2, 2), (4, 2))
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
          cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_COMPLEX_SMALL)
_CHARS = string.ascii_letters + string.digits


@contextlib.contextmanager
def _one_thread() -> Iterator[Any]:
    """torch on one thread while a fixture trains and exports: the machine is shared, and one thread makes
    the build reproducible. tools/models.py pins its own thread count each time it imports torch, so its
    count is swapped for the duration, not merely overridden (a pool that once had two threads kept
    spinning a second one)."""
    saved = models.THREADS
    models.THREADS = 1
    try:
        yield models._torch()
    finally:
        models.THREADS = saved
        models._torch()


def _torch():
    """torch as tools/models.py imports it (inside :func:`_one_thread`, on one thread)."""
    return models._torch()


def _built(out_dir: Path | None, name: str, seed: int, train: Callable[[Path], Path]) -> Path:
    """Fixture ``name``'s cached file for ``seed``, made by ``train(path)`` on one thread when there is none yet."""
    path = Path(out_dir or CACHE) / f"{name}-seed{seed}-r{RECIPE}.onnx"
    if path.is_file():
        return path
    with _one_thread():
        return train(path)


# --------------------------------------------------------------------------- drawing


def _outline(cls: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Polygon of shape ``cls`` (4..9; 0..3 are edgedl's scenes') of radius ``r``, tilted by ``angle``."""
    if cls < 4:
        return shape_points(cls, cx, cy, r, angle)
    if cls == 4:  # five-pointed star
        t = np.arange(10) * np.pi / 5 - np.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], 1) * np.where(np.arange(10) % 2, 0.45 * r, r)[:, None]
    elif cls == 6:  # diamond: taller than wide, so not a tilted square
        pts = np.array([[0, -r], [0.6 * r, 0], [0, r], [-0.6 * r, 0]])
    elif cls == 7:  # bar
        pts = np.array([[-r, -0.3 * r], [r, -0.3 * r], [r, 0.3 * r], [-r, 0.3 * r]])
    elif cls == 8:  # an L
        a, b = 0.85 * r, 0.3 * r
        pts = np.array([[-a, -a], [-a + 2 * b, -a], [-a + 2 * b, a - 2 * b], [a, a - 2 * b], [a, a], [-a, a]])
    else:  # an arrow pointing right
        pts = np.array([[-r, -0.25 * r], [0.2 * r, -0.25 * r], [0.2 * r, -0.7 * r], [r, 0], [0.2 * r, 0.7 * r],
                        [0.2 * r, 0.25 * r], [-r, 0.25 * r]])
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)


def _draw_shape(canvas: np.ndarray, rng: np.random.Generator, cls: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Draw shape ``cls`` in a colour that stands out; returns its tight box ``[x1, y1, x2, y2]``."""
    angle = rng.uniform(-0.3, 0.3)
    colour = contrasting_colour(rng, canvas[int(np.clip(cy, 0, canvas.shape[0] - 1)),
                                            int(np.clip(cx, 0, canvas.shape[1] - 1))])
    if cls == 5:  # ring: a thick anti-aliased circle outline
        cv2.circle(canvas, (round(cx * 16), round(cy * 16)), round((r - 0.15 * r) * 16), colour.tolist(),
                   max(2, round(0.3 * r)), cv2.LINE_AA, shift=4)
        return np.array([cx - r, cy - r, cx + r, cy + r])
    if cls < 4:
        return fill_shape(canvas, cls, cx, cy, r, angle, colour)
    pts = _outline(cls, cx, cy, r, angle)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], colour.tolist(), cv2.LINE_AA, shift=4)
    return np.concatenate([pts.min(0), pts.max(0)])


def _detector_frame(rng: np.random.Generator, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 320x240 frame with one to six shapes, classes at SHAPE_FREQUENCY; labels ``[k, 5]``: class, x1, y1, x2, y2."""
    return models.scene_frame(rng, noise, 6, lambda r: int(r.choice(len(SHAPES), p=SHAPE_FREQUENCY)), _draw_shape)


def _text_frame(rng: np.random.Generator, noise: np.ndarray, lines: tuple[int, int] = (1, 6)) -> tuple[np.ndarray, np.ndarray]:
    """A 256x256 frame of text lines and non-text clutter; label: the ``uint8`` mask of the text regions.

    Each line is a random string in a random Hershey font, size, thickness and contrasting colour.
    Its label, as DB's, is its box shrunk by a fifth of its height on each side, so that touching
    lines stay apart. Clutter (strokes, dots, filled shapes) is what the network learns is not text.
    """
    size = SEGMENTER_SIZE
    canvas = background(rng, size, size)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 7))):  # clutter first, text may cross it
        kind, colour = int(rng.integers(3)), contrasting_colour(rng, canvas[size // 2, size // 2]).tolist()
        a, b = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        if kind == 0:
            cv2.line(canvas, tuple(map(int, a)), tuple(map(int, b)), colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(canvas, tuple(map(int, a)), int(rng.integers(2, 25)), colour, int(rng.choice([-1, 2])), cv2.LINE_AA)
        else:
            fill_shape(canvas, int(rng.integers(4)), *a, rng.uniform(8, 30), rng.uniform(-0.3, 0.3), np.array(colour, float))
    for _ in range(int(rng.integers(*lines))):
        text = "".join(rng.choice(list(_CHARS), int(rng.integers(3, 12))))
        font, scale = _FONTS[int(rng.integers(len(_FONTS)))], rng.uniform(0.4, 1.3)
        thickness = int(rng.integers(1, 3))
        (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
        if tw >= size - 4:
            continue
        x, y = int(rng.integers(2, size - tw - 1)), int(rng.integers(th + 2, size - base - 1))
        colour = contrasting_colour(rng, canvas[min(y, size - 1), min(x + tw // 2, size - 1)])
        ink = np.zeros((size, size), np.uint8)  # putText draws on uint8 only: draw coverage, then blend
        cv2.putText(ink, text, (x, y), font, scale, 255, thickness, cv2.LINE_AA)
        alpha = ink[..., None].astype(np.float32) / 255
        canvas = canvas * (1 - alpha) + colour.astype(np.float32) * alpha
        top, bottom, shrink = y - th, y + base // 2, max(1, round(0.2 * th))
        cv2.rectangle(mask, (x + shrink, top + shrink), (x + tw - shrink, bottom - shrink), 1, -1)
    return finish(rng, canvas, noise), mask


# --------------------------------------------------------------------------- scoring


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))


def detector_scores(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """How well ``outputs`` (one ``[1, 4+nc, anchors]`` per image) keep FP32's ``reference``.

    ``kept``: the share of confident FP32 class scores (above :data:`CONFIDENT`, over all images,
    anchors and classes) that the variant gives within :data:`SCORE_TOLERANCE`. ``score_cos`` and
    ``box_cos``: the worst image's cosine of the class-score rows and of the box rows (a cosine of
    the whole tensor is the boxes', whose pixel values dwarf the scores).
    """
    ref, out = np.concatenate(reference), np.concatenate(outputs)
    confident = ref[:, 4:] > CONFIDENT
    kept = np.abs(out[:, 4:] - ref[:, 4:])[confident] <= SCORE_TOLERANCE
    return {"kept": float(kept.mean()) if kept.size else float("nan"),
            "score_cos": min(_cosine(r[4:], o[4:]) for r, o in zip(ref, out, strict=True)),
            "box_cos": min(_cosine(r[:4], o[:4]) for r, o in zip(ref, out, strict=True))}


def segmenter_scores(reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """How well ``outputs`` (``[1, 1, H, W]`` probability maps) keep FP32's ``reference``, per image.

    ``text_cos``: the mean over images of the cosine of the two maps over the pixels where either
    says text (above :data:`TEXT_THRESHOLD`), so missed and invented text both count and the empty
    background, which agrees trivially, does not; ``worst_cos`` the worst image's. ``iou``: the mean
    IoU of the two thresholded masks.
    """
    cos, iou = [], []
    for r, o in zip(reference, outputs, strict=True):
        yes_r, yes_o = r > TEXT_THRESHOLD, o > TEXT_THRESHOLD
        either = yes_r | yes_o
        cos.append(_cosine(r[either], o[either]) if either.any() else 1.0)
        iou.append((yes_r & yes_o).sum() / either.sum() if either.any() else 1.0)
    return {"text_cos": float(np.mean(cos)), "worst_cos": float(np.min(cos)), "iou": float(np.mean(iou))}


# --------------------------------------------------------------------------- the fixtures


@dataclass(frozen=True)
class Fixture:
    """One hard model: how to build it, draw its frames, feed it and score it."""

    name: str
    build: Callable[..., Path]
    preprocess: dict[str, Any]  # edgedl.convert's ``preprocess`` argument (a preset and overrides)
    size: int  # the model's square input side
    frame: tuple[int, int]  # width and height of the camera frames ``draw`` makes
    draw: Callable[[np.random.Generator, np.ndarray], tuple[np.ndarray, Any]]
    score: Callable[[list[np.ndarray], list[np.ndarray]], dict[str, float]]
    task: str  # edgedl.convert's ``task``
    labels: tuple[str, ...] = ()

    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(width=self.size, height=self.size,
                              **PreprocessOptions.from_mapping(self.preprocess).values())

    def labelled_frames(self, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[Any]]:
        """``n`` BGR frames and their labels; frame ``i`` depends on ``seed`` and ``i`` only."""
        rng = np.random.default_rng([seed, 0xF1C])
        noise = noise_bank(rng, self.frame[1], self.frame[0])
        pairs = [self.draw(rng, noise) for _ in range(n)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def inputs(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Each frame as a ``[1, 3, S, S]`` model input, preprocessed as edgedl's spec does."""
        spec = self.spec()
        return [preprocess(spec, frame)[0] for frame in frames]


def labelled_frames(kind: str, n: int, seed: int = 0) -> tuple[list[np.ndarray], list[Any]]:
    """``n`` BGR camera frames for fixture ``kind`` and their labels; frame ``i`` depends on ``seed`` and ``i`` only.

    Detector labels: ``[k, 5]`` rows of class, x1, y1, x2, y2 (frame pixels). Segmenter labels: the
    text mask. Segmenter frames drawn here always hold text (scoring must see text, not empty pages).
    """
    return FIXTURES[kind].labelled_frames(n, seed)


def sample_frames(kind: str, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` BGR uint8 frames of the kind fixture ``kind`` learned from (for calibration and scoring)."""
    return labelled_frames(kind, n, seed)[0]


def model_inputs(kind: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame as fixture ``kind``'s ``images`` input ``[1, 3, S, S]``, preprocessed as edgedl's preset does."""
    return FIXTURES[kind].inputs(frames)


def score(kind: str, reference: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, float]:
    """Fixture ``kind``'s accuracy measures of ``outputs`` against FP32's ``reference`` (same images)."""
    return FIXTURES[kind].score(reference, outputs)


# --------------------------------------------------------------------------- building the detector


def build_hard_detector(out_dir: Path | None = None, seed: int = 0, steps: int = 700) -> Path:
    """Train the ten-class, 320x320 YOLOv8-style detector and export ``images`` -> ``output0`` [batch,14,2100].

    Training, as tools/models.py's detector: 96x96 crops of letterboxed 320x240 frames (1024 of
    them), centred on objects, ``steps`` batches of 12, AdamW with a one-cycle schedule, BCE on
    class logits and GIoU on boxes; about two minutes on one thread. Input: RGB 0..1, letterboxed
    with grey 114 (edgedl's ``yolo`` preset). Raises ``RuntimeError`` if the held-out recall (IoU >
    0.5, right class, score > 0.25) stays below 0.5. Reuses the cached file when there is one.
    """
    return _built(out_dir, "hard-detector", seed, lambda path: _train_hard_detector(path, seed, steps))


def _train_hard_detector(path: Path, seed: int, steps: int) -> Path:
    torch = _torch()
    torch.manual_seed(seed)
    started = time.perf_counter()
    rng = np.random.default_rng([seed, 0x7EA1])
    noise = noise_bank(rng, DETECTION_FRAME[1], DETECTION_FRAME[0])
    pairs = [_detector_frame(rng, noise) for _ in range(1024)]
    frames, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    _, detector = models._networks()
    model = detector(classes=len(SHAPES), size=DETECTOR_SIZE).to(memory_format=torch.channels_last)
    anchors, strides = model.anchors.numpy(), model.strides.numpy()
    scale, (dx, dy) = models.letterbox(frames[0], DETECTOR_SIZE)[1:]
    boxes = [lab[:, 1:] * scale + (dx, dy, dx, dy) for lab in labels]
    targets = [models._detector_targets(b, lab[:, 0].astype(np.int64), anchors, strides)
               for b, lab in zip(boxes, labels, strict=True)]
    images = torch.from_numpy(np.stack([cv2.cvtColor(models.letterbox(f, DETECTOR_SIZE)[0], cv2.COLOR_BGR2RGB)
                                        for f in frames]))
    pos = torch.from_numpy(np.stack([t[0] for t in targets]))
    cls = torch.nn.functional.one_hot(torch.from_numpy(np.stack([t[1] for t in targets])), len(SHAPES)).float()
    cls = cls * pos[..., None]
    box = torch.from_numpy(np.stack([t[2] for t in targets]))

    crop, batch, last = 96, 12, models.DETECTOR_STRIDES[-1]
    offsets = range(0, DETECTOR_SIZE - crop + 1, last)
    index = {(ox, oy): torch.from_numpy(models._crop_anchor_index(ox, oy, crop, DETECTOR_SIZE))
             for ox in offsets for oy in offsets}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    model.train()
    for step in range(steps):
        loss, cls_loss, box_loss = models.detector_step(model, opt, sched, rng, (images, boxes, pos, cls, box),
                                                        index, crop, batch)
        if step % 150 == 0 or step == steps - 1:
            print(f"hard-detector: step {step:4d} loss {loss.item():.3f} (cls {cls_loss.item():.3f}, "
                  f"1-GIoU {box_loss.item():.3f}) {time.perf_counter() - started:.0f}s")
    model.to(memory_format=torch.contiguous_format)
    models._fuse_all(model)
    recall = _detector_recall(model, seed)
    print(f"hard-detector: held-out recall (IoU > 0.5, right class, score > {CONFIDENT}) {recall:.2f}, "
          f"trained in {time.perf_counter() - started:.0f}s")
    if recall < 0.5:
        raise RuntimeError(f"hard-detector trained to only {recall:.0%} held-out recall (needs 50%)")
    return models._export(model, torch.zeros(1, 3, DETECTOR_SIZE, DETECTOR_SIZE), path, "output0")


def _detector_recall(model: Any, seed: int, n: int = 64) -> float:
    """Share of objects in ``n`` unseen frames matched by a box with IoU > 0.5 and its class scored > CONFIDENT."""
    torch = _torch()
    frames, labels = labelled_frames("hard-detector", n, seed + 1000)
    with torch.no_grad():
        out = model(torch.from_numpy(np.concatenate(model_inputs("hard-detector", frames)))).numpy()
    scale, (dx, dy) = models.letterbox(frames[0], DETECTOR_SIZE)[1:]
    found = total = 0
    for pred, lab in zip(out, labels, strict=True):
        xy, wh = pred[:2].T, pred[2:4].T
        corners = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
        for row in lab:
            truth = row[1:] * scale + (dx, dy, dx, dy)
            found += bool(((models._iou(truth, corners) > 0.5) & (pred[4 + int(row[0])] > CONFIDENT)).any())
            total += 1
    return found / max(total, 1)


# --------------------------------------------------------------------------- building the segmenter


def _segmenter_network():
    """The MobileNetV3/PP-LCNet-style text segmenter's module classes (torch imported on first use)."""
    torch = _torch()
    nn = torch.nn

    class Affine(nn.Module):
        """A learnable per-channel scale and bias after an activation (PP-LCNetV3's learnable affine block,
        per channel). No norm follows it, so nothing stops a channel's range from growing."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1, c, 1, 1))
            self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

        def forward(self, x):
            return x * self.scale + self.bias

    class ConvBNHS(nn.Module):
        """Conv, batch norm, hard-swish, affine; :meth:`fuse` folds the norm into the conv for export."""

        def __init__(self, c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(c_out)
            self.act = nn.Hardswish()
            self.affine = Affine(c_out)

        def forward(self, x):
            return self.affine(self.act(self.bn(self.conv(x))))

        def fuse(self) -> None:
            self.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(self.conv, self.bn)
            self.bn = nn.Identity()

    class SE(nn.Module):
        """Squeeze-excitation, as MobileNetV3's: global pool, reduce, ReLU, expand, hard-sigmoid gate."""

        def __init__(self, c: int) -> None:
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

        def forward(self, x):
            gate = nn.functional.hardsigmoid(self.expand(nn.functional.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
            return x * gate

    class Block(nn.Module):
        """Depthwise kxk conv, optional SE, pointwise conv: PP-LCNet's depthwise separable block."""

        def __init__(self, c_in: int, c_out: int, k: int, stride: int, se: bool) -> None:
            super().__init__()
            self.dw = ConvBNHS(c_in, c_in, k, stride, groups=c_in)
            self.se = SE(c_in) if se else nn.Identity()
            self.pw = ConvBNHS(c_in, c_out)

        def forward(self, x):
            return self.pw(self.se(self.dw(x)))

    class Segmenter(nn.Module):
        """Stem, ten blocks down to 1/32, a DB-style FPN neck to 1/4, then DB's probability head."""

        #: c_in, c_out, kernel, stride, SE, as PP-LCNet's (narrower); the outputs of TAPS feed the neck.
        PLAN = ((16, 24, 3, 1, False), (24, 32, 3, 2, False), (32, 32, 3, 1, False), (32, 64, 3, 2, False),
                (64, 64, 3, 1, False), (64, 64, 5, 1, False), (64, 64, 5, 1, False), (64, 128, 5, 2, True),
                (128, 128, 5, 1, True), (128, 192, 5, 2, True))
        TAPS = (3, 7, 9, 10)  # blocks counted from 1: the last at strides 4, 8, 16 and 32

        def __init__(self, neck: int = 48) -> None:
            super().__init__()
            self.stem = ConvBNHS(3, 16, 3, 2)
            self.blocks = nn.ModuleList(Block(*row) for row in self.PLAN)
            widths = [self.PLAN[t - 1][1] for t in self.TAPS]
            self.lateral = nn.ModuleList(nn.Conv2d(c, neck, 1) for c in widths)
            self.smooth = nn.ModuleList(nn.Conv2d(neck, neck // 4, 3, padding=1) for _ in widths)
            self.head = nn.Sequential(
                nn.Conv2d(neck, neck // 4, 3, padding=1, bias=False), nn.BatchNorm2d(neck // 4), nn.ReLU(),
                nn.ConvTranspose2d(neck // 4, neck // 4, 2, 2), nn.BatchNorm2d(neck // 4), nn.ReLU(),
                nn.ConvTranspose2d(neck // 4, 1, 2, 2))

        def logits(self, x):
            x = self.stem(x)
            taps = []
            for i, block in enumerate(self.blocks, 1):
                x = block(x)
                if i in self.TAPS:
                    taps.append(x)
            laterals = [conv(t) for conv, t in zip(self.lateral, taps, strict=True)]
            for i in range(len(laterals) - 1, 0, -1):  # top-down: each level adds the coarser one, upsampled
                laterals[i - 1] = laterals[i - 1] + nn.functional.interpolate(laterals[i], scale_factor=2.0)
            fused = torch.cat([nn.functional.interpolate(conv(t), scale_factor=2.0 ** i) if i else conv(t)
                               for i, (conv, t) in enumerate(zip(self.smooth, laterals, strict=True))], 1)
            return self.head(fused)

        def forward(self, x):
            return self.logits(x).sigmoid()

    return Segmenter


def _fold_head_norms(model: Any) -> None:
    """Fold the head's batch norms into the conv and transposed conv before each (what a deployment export has)."""
    torch = _torch()
    head = model.head
    with torch.no_grad():
        for conv_at, bn_at in ((0, 1), (3, 4)):
            conv, bn = head[conv_at], head[bn_at]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            if isinstance(conv, torch.nn.ConvTranspose2d):  # weight [in, out, k, k]: scale the output axis
                conv.weight.mul_(scale.view(1, -1, 1, 1))
            else:
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
            conv.bias = torch.nn.Parameter(bias * scale + shift)
            head[bn_at] = torch.nn.Identity()


def _widen_outliers(model: Any, images: Any) -> list[tuple[int, int]]:
    """Make a few activation channels dwarf the rest without changing the float function.

    At each of :data:`OUTLIER_SITES` (a block without SE, whose depthwise stage's affine output feeds
    only the pointwise conv), the channels with the largest range already are picked; their affine
    scale and bias are multiplied by :data:`OUTLIER_SCALE` and the pointwise conv's weights reading
    them divided by it. The conv's sum, and so every later tensor, is what it was (bit for bit: the
    factor is a power of two), but the tensor between them now has a few channels 128x wider than
    the rest, as the outliers real networks grow: one per-tensor activation scale sized for them
    leaves the other channels a handful of steps, and the pointwise conv's shrunken weights round
    towards zero. How hard that hits plain PTQ (:func:`plain_ptq`, 48 calibration pages, mean text
    cosine on 24 unseen ones), by factor: none 0.994, 64x 0.918, 128x 0.777, 256x 0.310.
    Returns the (block, channel) pairs widened.
    """
    torch = _torch()
    widened = []
    with torch.no_grad():
        for block_at, count in OUTLIER_SITES:
            block = model.blocks[block_at]
            seen: list[Any] = []
            hook = block.dw.register_forward_hook(lambda _m, _i, out, into=seen: into.append(out))
            model(images)
            hook.remove()
            peaks = seen[0].abs().amax((0, 2, 3))
            for channel in peaks.argsort(descending=True)[:count].tolist():
                block.dw.affine.scale[0, channel] *= OUTLIER_SCALE
                block.dw.affine.bias[0, channel] *= OUTLIER_SCALE
                block.pw.conv.weight[:, channel] /= OUTLIER_SCALE
                widened.append((block_at, channel))
    return widened


def _dice_bce(logits: Any, target: Any) -> Any:
    torch = _torch()
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + dice


def build_text_segmenter(out_dir: Path | None = None, seed: int = 0, steps: int = 700) -> Path:
    """Train the MobileNetV3/LCNet-style text segmenter and export ``images`` [batch,3,256,256] -> ``prob``.

    ``prob`` ``[batch, 1, 256, 256]`` is the probability that a pixel lies in a (shrunk) text line.
    Input: RGB 0..1, stretched to 256x256 (edgedl's ``raw01`` preset). Training: 1024 drawn pages
    (a tenth without text), 128x128 crops, ``steps`` batches of 16, AdamW with a one-cycle schedule,
    BCE plus dice loss; about two minutes on one thread. Then batch norms are folded and
    :func:`_widen_outliers` makes its outlier channels. Raises ``RuntimeError`` if the held-out IoU
    of the thresholded map with the drawn text stays below 0.5. Reuses the cached file when there is one.
    """
    return _built(out_dir, "text-segmenter", seed, lambda path: _train_text_segmenter(path, seed, steps))


def _train_text_segmenter(path: Path, seed: int, steps: int) -> Path:
    torch = _torch()
    torch.manual_seed(seed)
    started = time.perf_counter()
    rng = np.random.default_rng([seed, 0x7E47])
    noise = noise_bank(rng, SEGMENTER_SIZE, SEGMENTER_SIZE)
    pairs = [_text_frame(rng, noise, (0, 1) if i % 10 == 0 else (1, 6)) for i in range(1024)]
    images = torch.from_numpy(np.stack([cv2.cvtColor(p[0], cv2.COLOR_BGR2RGB) for p in pairs]))
    masks = torch.from_numpy(np.stack([p[1] for p in pairs]))
    model = _segmenter_network()()
    crop, batch = 128, 16
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps, pct_start=0.15)
    model.train()
    for step in range(steps):
        picks = rng.integers(0, len(pairs), batch)
        ox, oy = rng.integers(0, SEGMENTER_SIZE - crop + 1, (2, batch))
        x = torch.stack([images[i, y : y + crop, x_ : x_ + crop] for i, x_, y in zip(picks, ox, oy, strict=True)])
        x = x.permute(0, 3, 1, 2).float() / 255
        target = torch.stack([masks[i, y : y + crop, x_ : x_ + crop] for i, x_, y in zip(picks, ox, oy, strict=True)])
        loss = _dice_bce(model.logits(x)[:, 0], target.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"text-segmenter: step {step:4d} loss {loss.item():.3f} {time.perf_counter() - started:.0f}s")
    models._fuse_all(model)
    _fold_head_norms(model)
    held_out = _segmenter_iou(model, seed)
    probe = torch.from_numpy(np.concatenate(model_inputs("text-segmenter", sample_frames("text-segmenter", 16, seed + 2000))))
    with torch.no_grad():
        before = model(probe)
    widened = _widen_outliers(model, probe)
    with torch.no_grad():
        drift = (model(probe) - before).abs().max().item()
    print(f"text-segmenter: held-out IoU with the drawn text {held_out:.2f}; widened {widened} x{OUTLIER_SCALE:g} "
          f"(largest change of any probability {drift:.1e}); trained in {time.perf_counter() - started:.0f}s")
    if held_out < 0.5:
        raise RuntimeError(f"text-segmenter trained to only {held_out:.2f} held-out IoU (needs 0.5)")
    return models._export(model, torch.zeros(1, 3, SEGMENTER_SIZE, SEGMENTER_SIZE), path, "prob")


def _segmenter_iou(model: Any, seed: int, n: int = 32) -> float:
    """IoU over ``n`` unseen pages of the thresholded probability map with the drawn text regions."""
    torch = _torch()
    frames, masks = labelled_frames("text-segmenter", n, seed + 1000)
    with torch.no_grad():
        prob = model(torch.from_numpy(np.concatenate(model_inputs("text-segmenter", frames))))[:, 0].numpy()
    said, truth = prob > TEXT_THRESHOLD, np.stack(masks) > 0
    return float((said & truth).sum() / max((said | truth).sum(), 1))


FIXTURES: dict[str, Fixture] = {
    "hard-detector": Fixture("hard-detector", build_hard_detector, {"preset": "yolo"}, DETECTOR_SIZE,
                             DETECTION_FRAME, _detector_frame, detector_scores, "detect", SHAPES),
    "text-segmenter": Fixture("text-segmenter", build_text_segmenter, {"preset": "raw01"}, SEGMENTER_SIZE,
                              (SEGMENTER_SIZE, SEGMENTER_SIZE), _text_frame, segmenter_scores, "raw"),
}


# --------------------------------------------------------------------------- the plain baseline


class Feed:
    """ONNX Runtime's CalibrationDataReader over a list of arrays for the input ``name``."""

    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self.name, self._items = name, iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._items, None)
        return None if item is None else {self.name: item}


def input_name(model: Path) -> str:
    """The name of the model's (first) input."""
    import onnx

    return onnx.load(str(model), load_external_data=False).graph.input[0].name


def plain_ptq(model: Path, out: Path, calibration: list[np.ndarray]) -> Path:
    """ONNX Runtime ``quantize_static`` as its documentation shows it: QDQ, per-channel int8 weights,
    uint8 activations, MinMax calibration, every default op type. Writes ``out`` and returns it."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(model), str(out), Feed(input_name(model), calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out


def run(model: Path | bytes, inputs: list[np.ndarray], fuse_qdq: bool = True) -> list[np.ndarray]:
    """The model's first output for each input, on ONNX Runtime's CPU (``fuse_qdq=False``: Q/DQ run as written)."""
    from edgedl.loading.ort_session import cpu_session

    session = cpu_session(model, fuse_qdq=fuse_qdq)
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x})[0] for x in inputs]


def main() -> None:
    """Build both fixtures (cached) and print how plain ONNX Runtime PTQ fares on unseen frames."""
    import tempfile

    for kind, fixture in FIXTURES.items():
        start = time.perf_counter()
        path = fixture.build()
        print(f"{kind}: {path} ({path.stat().st_size / 1024:.0f} KiB), ready in {time.perf_counter() - start:.0f}s")
        calibration = model_inputs(kind, sample_frames(kind, 64, seed=1))
        held_out = model_inputs(kind, sample_frames(kind, 32, seed=99))
        with tempfile.TemporaryDirectory() as tmp:
            quantized = plain_ptq(path, Path(tmp) / "plain.onnx", calibration)
            reference, outputs = run(path, held_out), run(quantized, held_out)
        print(f"{kind}: plain ORT quantize_static vs FP32 on 32 unseen frames: "
              + ", ".join(f"{k} {v:.4f}" for k, v in score(kind, reference, outputs).items()))


if __name__ == "__main__":
    main()
