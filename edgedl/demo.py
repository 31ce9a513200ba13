"""The default that ships: a small shapes detector, converted to INT8 and streamed from a synthetic camera.

The detector (``data/demo/shapes_detector.onnx``, trained by ``tools/make_demo.py``) finds the
four shapes that ``synthetic://shapes`` draws, and that source knows where it drew them, so the
demo reports accuracy as well as speed without any camera or downloaded data.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from edgedl.about import DATA_DIR
from edgedl.errors import BundleError

log = logging.getLogger("edgedl.demo")

DEMO_DIR = DATA_DIR / "demo"
DETECTOR = DEMO_DIR / "shapes_detector.onnx"
LABELS = DEMO_DIR / "labels.txt"
BUNDLE_NAME = "shapes_detector.edgedl"
CALIBRATION_FRAMES = 96
CALIBRATION_SEED = 1  # a different scene stream from the one the demo shows (demo_source's seed)
DEMO_SEED = 7


def demo_source(frames: int, fps: float, seed: int = DEMO_SEED) -> str:
    """The synthetic camera URI the demo streams: moving shapes, 640x480, ``frames`` long."""
    return f"synthetic://shapes?width=640&height=480&fps={fps:g}&frames={frames}&seed={seed}"


def demo_bundle(out: Path, progress: bool = True) -> Path:
    """``out/shapes_detector.edgedl``: the shipped detector in INT8, converted now or reused when current.

    A bundle already there is reused only when it opens cleanly (hashes checked) and was made from
    the detector that ships with this version; anything else is converted again.
    """
    from edgedl.bundle import Bundle
    from edgedl.conversion import convert
    from edgedl.fsutil import sha256_file

    path = out / BUNDLE_NAME
    if path.exists():
        try:
            bundle = Bundle.open(path)
            if bundle.manifest.source.get("sha256") == sha256_file(DETECTOR) and "int8" in bundle.manifest.precisions:
                log.info("reusing %s", path)
                return path
        except BundleError as exc:
            log.warning("converting again: %s", exc)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgedl-demo-calib-") as calib:
        write_frames(demo_source(CALIBRATION_FRAMES, 0, CALIBRATION_SEED), Path(calib))
        convert(DETECTOR, path, int8=True, calib_data=calib, calib_samples=CALIBRATION_FRAMES - 16,
                preprocess={"preset": "yolo"}, labels=LABELS, task="detect", force=True, show=progress)
    return path


def write_frames(uri: str, folder: Path) -> int:
    """Save every frame of a finite source as PNG files in ``folder``; returns how many."""
    import cv2

    from edgedl.sources import open_source

    count = 0
    with open_source(uri) as stream:
        for frame in stream:
            cv2.imwrite(str(folder / f"{frame.index:05d}.png"), frame.image)
            count += 1
    return count
