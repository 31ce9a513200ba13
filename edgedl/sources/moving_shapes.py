"""The scene behind ``synthetic://shapes``: filled shapes bouncing around a textured, noisy background.

It draws what the demo detector was trained on (:mod:`edgedl.sources.scenes`): the same four
shapes, radii and tilts scaled from the 320x240 training frames to this frame size, colours
that stand out in brightness from the background under them, sensor noise and a slight blur.
Unlike the training frames, which are each drawn from scratch, a stream renders its background
and its blurred noise once and then only draws the shapes into a copy, so a 640x480 frame costs
about a millisecond. The same seed gives the same frames.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from edgedl.sources.scenes import (
    CLASSES,
    DETECTION_FRAME,
    MAX_TILT,
    NOISE_MARGIN,
    background,
    fill_shape,
    noise_bank,
    place,
    with_contrast,
)

SPEED = (1.0, 3.0)  # pixels per frame at the training frame size
SPIN = (0.02, 0.08)  # radians per frame of the tilt's oscillation phase


class MovingShapes:
    """Up to ``objects`` shapes that move, bounce off the edges and off each other, and wobble within MAX_TILT.

    :meth:`render` returns the next frame (BGR uint8) and its ground truth: float32 ``[k, 6]``
    rows of class, x1, y1, x2, y2, object id. The first five columns are the demo models' training
    labels (class, then the tight box of the drawn outline in frame pixels); the object id (0 to
    k-1) stays with its shape for the life of the stream, which is what tracking is scored against.
    """

    def __init__(self, rng: np.random.Generator, width: int, height: int, objects: int) -> None:
        self.rng, self.width, self.height = rng, width, height
        scale = min(width / DETECTION_FRAME[0], height / DETECTION_FRAME[1])
        self.background = np.clip(background(rng, height, width), 0, 255).astype(np.uint8)
        taken: list[np.ndarray] = []
        for _ in range(objects):  # where the frame is too full, fewer shapes
            spot = place(rng, width, height, taken, scale)
            if spot is not None:
                cx, cy, r = spot
                taken.append(np.array([cx - r, cy - r, cx + r, cy + r]))
        count = len(taken)
        boxes = np.array(taken).reshape(count, 4)
        self.centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        self.radii = (boxes[:, 2] - boxes[:, 0]) / 2
        self.classes = rng.integers(len(CLASSES), size=count)
        self.colours = rng.uniform(0, 255, (count, 3))
        heading = rng.uniform(0, 2 * math.pi, count)
        self.velocity = np.stack([np.cos(heading), np.sin(heading)], 1) * (rng.uniform(*SPEED, count) * scale)[:, None]
        self.phase = rng.uniform(0, 2 * math.pi, count)
        self.spin = rng.uniform(*SPIN, count) * rng.choice((-1.0, 1.0), count)
        self.blur = float(rng.uniform(0.3, 1.0))
        # Blurring is linear, so noise blurred once, added to each blurred frame, equals blurring each noisy frame.
        noise = cv2.GaussianBlur(noise_bank(rng, height, width), (3, 3), self.blur) * rng.uniform(3, 12)
        self.noise = np.round(noise).astype(np.int16)
        self.frame = 0

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """The next frame and its ground truth; then moves the shapes one step."""
        canvas = self.background.copy()
        truth = np.empty((len(self.radii), 6), np.float32)
        for i, ((cx, cy), r) in enumerate(zip(self.centres, self.radii, strict=True)):
            angle = MAX_TILT * math.sin(self.phase[i] + self.spin[i] * self.frame)
            under = self.background[int(cy), int(cx)].astype(np.float64)
            colour = with_contrast(self.colours[i].copy(), under)  # keeps standing out as the background changes
            truth[i, 0] = self.classes[i]
            truth[i, 1:5] = fill_shape(canvas, int(self.classes[i]), cx, cy, r, angle, colour)
            truth[i, 5] = i  # shapes neither appear nor vanish mid-stream, so the index is a stable id
        canvas = cv2.GaussianBlur(canvas, (3, 3), self.blur)
        y, x = self.rng.integers(0, NOISE_MARGIN + 1, 2)
        image = cv2.add(canvas, self.noise[y : y + self.height, x : x + self.width], dtype=cv2.CV_8U)
        self._move()
        self.frame += 1
        return image, truth

    def _move(self) -> None:
        """One step: bounce off the frame's edges, then off each other (an elastic collision of equal masses)."""
        self.centres += self.velocity
        low = self.radii[:, None]
        high = np.array([self.width, self.height]) - low
        self.velocity = np.where(self.centres < low, np.abs(self.velocity), self.velocity)
        self.velocity = np.where(self.centres > high, -np.abs(self.velocity), self.velocity)
        np.clip(self.centres, low, high, out=self.centres)
        apart = self.centres[:, None] - self.centres[None]
        distance = np.hypot(apart[..., 0], apart[..., 1])
        touching = np.triu(distance < self.radii[:, None] + self.radii[None], 1) & (distance > 0)
        for i, j in zip(*np.nonzero(touching), strict=True):
            normal = apart[i, j] / distance[i, j]
            closing = float((self.velocity[i] - self.velocity[j]) @ normal)
            if closing < 0:  # moving towards each other: swap their velocities along the line between centres
                self.velocity[i] -= closing * normal
                self.velocity[j] += closing * normal

