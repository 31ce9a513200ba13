"""``synthetic://shapes`` and ``synthetic://noise``: generated frames for tests, the demo, benchmarks and camera-less machines.

    synthetic://shapes?width=640&height=480&fps=30&frames=300&objects=3&seed=0

``shapes`` draws moving shapes with ground truth (:mod:`edgedl.sources.moving_shapes`);
``noise`` gives uniform random frames at the cost of a copy. With ``fps`` above 0 (default 30)
frames come at that rate, like a camera (a live source: a slow consumer loses the oldest);
``fps=0`` gives them as fast as they are read, and none is dropped. ``frames`` ends the source
after that many; ``seed`` picks the scene (the same seed, the same frames).
"""

from __future__ import annotations

import time

import numpy as np

from edgedl.errors import UsageError
from edgedl.sources.moving_shapes import MovingShapes
from edgedl.sources.reader import Capture, Report
from edgedl.sources.scenes import NOISE_MARGIN
from edgedl.sources.uri import SourceSpec

KINDS: tuple[str, ...] = ("shapes", "noise")
DEFAULTS = {"width": 640, "height": 480, "fps": 30.0, "seed": 0, "objects": 3}


class Noise:
    """Uniform random frames: windows of one pre-drawn bank, so a frame costs a copy."""

    def __init__(self, rng: np.random.Generator, width: int, height: int) -> None:
        self.rng, self.width, self.height = rng, width, height
        self.bank = rng.integers(0, 256, (height + NOISE_MARGIN, width + NOISE_MARGIN, 3), dtype=np.uint8)

    def render(self) -> tuple[np.ndarray, None]:
        """The next frame (no ground truth)."""
        y, x = self.rng.integers(0, NOISE_MARGIN + 1, 2)
        return self.bank[y : y + self.height, x : x + self.width].copy(), None


class SyntheticReader:
    """A :class:`~edgedl.sources.reader.FrameReader` that generates its frames."""

    reconnectable = False

    def __init__(self, spec: SourceSpec) -> None:
        if spec.target not in KINDS:
            raise UsageError(f"{spec.uri}: unknown synthetic source {spec.target!r}",
                             fix=f"use {' or '.join(f'synthetic://{kind}' for kind in KINDS)}")
        spec.accept([*DEFAULTS, "frames"] if spec.target == "shapes" else ["width", "height", "fps", "frames", "seed"])
        self.kind = spec.target
        self.width, self.height = spec.option("width", DEFAULTS["width"]), spec.option("height", DEFAULTS["height"])
        self.fps: float = spec.option("fps", DEFAULTS["fps"])
        self.frames: int | None = spec.option("frames")
        self.seed, self.objects = spec.option("seed", DEFAULTS["seed"]), spec.option("objects", DEFAULTS["objects"])
        self.live = self.fps > 0
        self._scene: MovingShapes | Noise | None = None
        self._count = 0
        self._due: float | None = None

    def open(self, report: Report) -> None:
        """Draw the scene's fixed parts (background, noise bank, shapes and their paths)."""
        rng = np.random.default_rng(self.seed)
        self._scene = MovingShapes(rng, self.width, self.height, self.objects) if self.kind == "shapes" else \
            Noise(rng, self.width, self.height)
        self._count = 0
        self._due = None

    def read(self) -> Capture | None:
        """The next frame, at the stream's rate when ``fps`` > 0; ``None`` after ``frames`` frames."""
        if self._scene is None or (self.frames is not None and self._count >= self.frames):
            return None
        if self.live:
            self._wait_for_next()
        image, truth = self._scene.render()
        self._count += 1
        return Capture(image, truth)

    def _wait_for_next(self) -> None:
        """Sleep until the next frame is due; after falling more than a frame behind, start the schedule again (no burst)."""
        period = 1.0 / self.fps
        now = time.monotonic()
        if self._due is None or now - self._due > period:
            self._due = now
        elif now < self._due:
            time.sleep(self._due - now)
        self._due += period

    def close(self) -> None:
        """Drop the scene."""
        self._scene = None

    def describe(self) -> str:
        """Kind, size, rate and length."""
        rate = f"{self.fps:g} fps" if self.live else "unpaced"
        length = f", {self.frames} frames" if self.frames is not None else ""
        return f"synthetic {self.kind} {self.width}x{self.height}, {rate}{length}, seed {self.seed}"
