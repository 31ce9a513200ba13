"""Drawing primitives for synthetic scenes: filled shapes over a noisy, textured background.

The demo models (tools/models.py) are trained on frames drawn with these functions and the
``synthetic://shapes`` source draws its moving shapes with them, so the demo detector sees at
run time the kind of picture it learned from. Everything takes a seeded
``numpy.random.Generator``: the same seed gives the same pixels, so the calls each function
makes on it, and their order, are part of its contract.

Canvases are float32 BGR ``H x W x 3`` until :func:`finish` turns them into camera-like uint8.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: The shapes, in class-id order (the demo models' labels).
CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
#: The frame size (width, height) the demo detector is trained on; radii below are at this size.
DETECTION_FRAME: tuple[int, int] = (320, 240)
#: Smallest and largest shape radius (pixels at :data:`DETECTION_FRAME`), drawn log-uniformly.
RADIUS_RANGE: tuple[float, float] = (9.0, 70.0)
MAX_TILT = 0.3  # radians a shape may be rotated by
MIN_LUMA_CONTRAST = 100.0  # how much brighter or darker than its surroundings a shape is drawn
LUMA_BGR = np.array([0.114, 0.587, 0.299])  # BGR weights of Rec. 601 luma
NOISE_MARGIN = 64  # a noise bank is this much larger than the frame each way, so windows can move
PLACEMENT_ATTEMPTS = 20


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth colour field with finer mottling, like an out-of-focus real scene (float32 BGR)."""
    field = np.empty((height, width, 3), np.float32)
    field[:] = rng.uniform(50, 205, 3)
    for cells, amplitude in ((int(rng.integers(2, 6)), 60.0), (int(rng.integers(8, 16)), 25.0)):
        coarse = rng.uniform(-amplitude, amplitude, size=(cells, cells, 3)).astype(np.float32)
        field += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return field


def shape_points(cls: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Polygon outline (float ``[k, 2]``) of shape ``cls`` of radius ``r`` rotated by ``angle`` radians.

    Every outline fits in the circle of radius ``r`` around ``(cx, cy)`` for tilts up to :data:`MAX_TILT`.
    """
    if cls == 0:
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif cls == 1:
        s = 0.8 * r
        pts = np.array([[-s, -s], [s, -s], [s, s], [-s, s]])
    elif cls == 2:
        t = angle + np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([cx + r * np.cos(t), cy - r * np.sin(t)], 1)
    else:
        a, b = 0.95 * r, 0.3 * r  # arm half-length, half-thickness
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b],
                        [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)


def with_contrast(colour: np.ndarray, under: np.ndarray) -> np.ndarray:
    """``colour`` (BGR) blended towards white or black until its luma differs from ``under``'s by MIN_LUMA_CONTRAST.

    Objects in real scenes differ from their surroundings in brightness, not only in hue; a
    pure hue difference makes the task far harder than the few seconds of training allow.
    Blends ``colour`` in place and returns it.
    """
    luma, surround = float(colour @ LUMA_BGR), float(under @ LUMA_BGR)
    if abs(luma - surround) < MIN_LUMA_CONTRAST:  # blend away from the background
        target, wanted = (255.0, surround + MIN_LUMA_CONTRAST) if surround < 128 else \
            (0.0, surround - MIN_LUMA_CONTRAST)
        colour += (wanted - luma) / (target - luma) * (target - colour)
    return colour


def contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour at least MIN_LUMA_CONTRAST brighter or darker than ``under`` (BGR)."""
    return with_contrast(rng.uniform(0, 255, 3), under)


def fill_shape(canvas: np.ndarray, cls: int, cx: float, cy: float, r: float, angle: float,
               colour: np.ndarray) -> np.ndarray:
    """Fill one anti-aliased shape on ``canvas`` (float32 or uint8 BGR); returns its tight box ``[x1, y1, x2, y2]``."""
    pts = shape_points(cls, cx, cy, r, angle)
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], colour.tolist(), cv2.LINE_AA, shift=4)
    return np.concatenate([pts.min(0), pts.max(0)])


def draw(canvas: np.ndarray, rng: np.random.Generator, cls: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Draw shape ``cls`` at a random tilt in a colour that stands out from the canvas under its centre.

    Returns its tight box ``[x1, y1, x2, y2]`` (the label the demo models learn).
    """
    angle = rng.uniform(-MAX_TILT, MAX_TILT)
    y0, x0 = int(np.clip(cy, 0, canvas.shape[0] - 1)), int(np.clip(cx, 0, canvas.shape[1] - 1))
    return fill_shape(canvas, cls, cx, cy, r, angle, contrasting_colour(rng, canvas[y0, x0]))


def place(rng: np.random.Generator, width: int, height: int, taken: list[np.ndarray],
          scale: float = 1.0) -> tuple[float, float, float] | None:
    """Centre and radius ``(cx, cy, r)`` of a new shape inside the frame, clear of the boxes in ``taken``.

    The radius is drawn log-uniformly from :data:`RADIUS_RANGE` times ``scale`` (as many small
    shapes as large). ``taken`` holds ``[x1, y1, x2, y2]`` boxes (``cx ± r``); after
    PLACEMENT_ATTEMPTS tries that all overlap one, returns ``None``: skip this shape.
    """
    low, high = RADIUS_RANGE
    for _attempt in range(PLACEMENT_ATTEMPTS):
        r = float(np.exp(rng.uniform(np.log(low), np.log(high)))) * scale
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        if not taken or not _overlaps(np.array([cx - r, cy - r, cx + r, cy + r]), np.array(taken)):
            return cx, cy, r
    return None


def _overlaps(box: np.ndarray, boxes: np.ndarray) -> bool:
    """Whether ``box`` shares any area with one of ``boxes`` (touching edges do not count)."""
    inside = np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2])
    return bool((inside > 0).all(axis=1).any())


def noise_bank(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Standard normal float32 noise NOISE_MARGIN larger than ``height x width`` each way, for :func:`finish`.

    Drawing fresh Gaussian noise for every frame would cost more than the rest of the frame;
    a random window of one bank looks the same.
    """
    return rng.standard_normal((height + NOISE_MARGIN, width + NOISE_MARGIN, 3), dtype=np.float32)


def finish(rng: np.random.Generator, canvas: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Sensor noise (a random window of the ``noise`` bank) and slight blur, then uint8. Changes ``canvas``."""
    h, w = canvas.shape[:2]
    y, x = rng.integers(0, noise.shape[0] - h + 1), rng.integers(0, noise.shape[1] - w + 1)
    canvas += noise[y : y + h, x : x + w] * rng.uniform(3, 12)
    canvas = cv2.GaussianBlur(canvas, (3, 3), rng.uniform(0.3, 1.0))
    return np.clip(canvas, 0, 255).astype(np.uint8)
