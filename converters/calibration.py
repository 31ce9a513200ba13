"""Calibration data: images or arrays in, seeded calibration and held-out sets out.

Images are decoded by :mod:`edgedl.images`, as the image-folder source decodes them (8-bit BGR,
as OpenCV's ``IMREAD_COLOR`` gives it), and preprocessed by :func:`edgedl.preprocess.preprocess`,
the same function the CPU runtime uses, driven by the bundle's spec. Samples held
out for validation are chosen first and never reach the calibrator.

A handful of photographs holds out a handful of frames, too few for the gate to judge by what a
user sees. So, by default, held-out frames fewer than ``holdout`` are grown by :data:`HOLDOUT_VIEWS`
of themselves (a mirror, a centre crop, a half-resolution copy), made from the decoded image before
preprocessing, as a camera could have framed them; calibration frames are never used, so the
held-out samples stay disjoint from what set the INT8 ranges. The summary counts each view.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgedl.errors import CalibrationError
from edgedl.images import IMAGE_SUFFIXES, decode_bgr, read_bytes, stored_form
from edgedl.manifest import TensorInfo
from edgedl.preprocess import PreprocessSpec, preprocess
from edgedl.types import Sample

log = logging.getLogger("edgedl.calibration")

#: The views of a held-out frame that grow a small held-out set, in the order they are added.
HOLDOUT_VIEWS: tuple[str, ...] = ("mirror", "crop", "shrink")
#: The share of each side a "crop" view keeps, around the centre: objects come closer and some leave the frame.
CROP_KEEP = 0.75


@dataclass
class CalibrationSet:
    """Samples for the calibrator and disjoint samples for validation."""

    calibration: list[Sample]
    holdout: list[Sample]
    summary: dict[str, Any] = field(default_factory=dict)


def shipped_photos_dir() -> Path:
    """The folder of real photographs that ships with edgedl (see its LICENSES.md)."""
    from edgedl.about import DATA_DIR

    return DATA_DIR / "calib"


def _split(n: int, holdout: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, disjoint index sets: (calibration, holdout)."""
    order = np.random.default_rng(seed).permutation(n)
    n_hold = min(holdout, max(1, n // 4)) if n > 1 else 0
    held = order[:n_hold]
    calib = order[n_hold : n_hold + samples]
    return calib, held


def _read_image(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The image as :func:`edgedl.images.decode_bgr` gives it, and what that changed (see ``StoredForm.conversions``)."""
    try:
        data = read_bytes(path)
    except OSError as exc:
        raise CalibrationError(f"image cannot be read ({exc.strerror or exc})", path=path,
                               fix="check that the file exists and that you may read it") from None
    form = stored_form(data)
    if form is not None and form.is_float:
        # OpenCV's 8-bit decoding of float pixels depends on the codec (.hdr is scaled by 255, .pfm is not),
        # so a float frame would set the INT8 ranges from pixels the camera never delivers.
        raise CalibrationError(f"image holds {', '.join(form.conversions())} pixels, which have no one 8-bit meaning",
                               path=path, fix="tone-map it to an 8-bit PNG/JPEG, as your camera delivers frames")
    image = None if form is None else decode_bgr(data)
    if form is None or image is None:
        raise CalibrationError("image cannot be decoded", path=path,
                               fix="remove or replace the file (it is empty, truncated or not an image)")
    return image, form.conversions()


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (and sometimes a mirror) so a few photographs give varied samples."""
    h, w = image.shape[:2]
    frac = rng.uniform(0.5, 1.0)
    ch, cw = max(8, int(h * frac)), max(8, int(w * frac * rng.uniform(0.8, 1.25)))
    cw = min(cw, w)
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = image[y0 : y0 + ch, x0 : x0 + cw]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def holdout_view(image: np.ndarray, view: str) -> np.ndarray:
    """One of :data:`HOLDOUT_VIEWS` of a decoded BGR frame: ``mirror`` (left-right), ``crop`` (the centre
    :data:`CROP_KEEP` of each side) or ``shrink`` (half the resolution, as a coarser camera gives it)."""
    h, w = image.shape[:2]
    if view == "mirror":
        return np.ascontiguousarray(image[:, ::-1])
    if view == "crop":
        ch, cw = max(1, round(h * CROP_KEEP)), max(1, round(w * CROP_KEEP))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw])
    if view == "shrink":
        return cv2.resize(image, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    raise ValueError(f"unknown held-out view {view!r}")


def _grow(images: list[np.ndarray], target: int) -> tuple[list[np.ndarray], Counter[str]]:
    """The held-out frames, then their views (each view of every frame before the next view) until ``target``."""
    grown, views = list(images), Counter[str]()
    for view in HOLDOUT_VIEWS:
        for image in images:
            if len(grown) >= target:
                return grown, views
            grown.append(holdout_view(image, view))
            views[view] += 1
    return grown, views


def from_images(folder: Path, spec: PreprocessSpec, input_name: str, samples: int, holdout: int,
                seed: int, augment_to: int = 0) -> CalibrationSet:
    """Calibration from a folder of images, preprocessed exactly as the runtime will.

    Fewer held-out frames than ``holdout`` are grown by their :data:`HOLDOUT_VIEWS` (with ``augment_to``, by
    seeded random crops of them instead), counted by view in the summary's ``holdout_views``.
    The summary's ``converted_to_8bit_bgr`` counts the files read (calibration and held out) by what decoding
    changed in them, e.g. ``{"16-bit": 1, "grayscale": 3, "with alpha": 1}`` (a 16-bit grey file counts under both).
    """
    files = image_files(folder)
    if not files:
        raise CalibrationError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}…) in calibration folder", path=folder,
                               fix="point --calib-data at a folder of JPEG/PNG frames from your camera")
    calib_idx, hold_idx = _split(len(files), holdout, samples, seed)
    rng = np.random.default_rng(seed)

    converted: Counter[str] = Counter()
    views: Counter[str] = Counter()

    def read(indices: np.ndarray) -> list[np.ndarray]:
        images = []
        for i in indices:
            image, conversions = _read_image(files[i])
            images.append(image)
            converted.update(conversions)
        return images

    def load(images: list[np.ndarray], count: int) -> list[Sample]:
        if count <= len(images) or not images:
            return [{input_name: preprocess(spec, im)[0]} for im in images]
        # Few photographs: vary them by seeded crops so the calibrator sees more than a handful of views.
        return [{input_name: preprocess(spec, _augment(images[k % len(images)], rng))[0]} for k in range(count)]

    calibration = load(read(calib_idx), augment_to)
    held_images = read(hold_idx)
    if augment_to:
        held = load(held_images, augment_to // 4)
        if len(held) > len(held_images):  # every sample is then a random crop of a held-out frame
            views["random crop"] = len(held)
    else:
        grown, views = _grow(held_images, holdout)
        held = load(grown, 0)
    return CalibrationSet(calibration, held, {
        "source": str(folder), "kind": "images", "files": len(files),
        "calibration_samples": len(calibration), "holdout_samples": len(held),
        "holdout_files": sorted(files[i].name for i in hold_idx), "seed": seed,
        "augmented": augment_to > 0, "holdout_views": {k: n for k, n in views.items() if n},
        "converted_to_8bit_bgr": dict(sorted(converted.items())),
    })


def _check_sample_shape(path: Path, info: TensorInfo, array: np.ndarray) -> None:
    want = info.shape
    if array.ndim != len(want) or any(isinstance(w, int) and w > 0 and w != a for w, a in zip(want, array.shape, strict=True)):
        raise CalibrationError(f"samples for input {info.name!r} have shape {list(array.shape)}, "
                               f"the model expects {want}", path=path,
                               fix="save arrays as N x <input shape without batch> (or N x input shape)")


def _as_samples(path: Path, info: TensorInfo, array: np.ndarray) -> list[np.ndarray]:
    """Split an ``N x ...`` array into batch-of-one samples for one input."""
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise CalibrationError(f"array for input {info.name!r} has dtype {array.dtype}", path=path,
                               fix="save numeric arrays with numpy.save / numpy.savez")
    rank = len(info.shape)
    if array.ndim == rank + 1:  # N samples, each with the full input shape (batch 1)
        parts = [a for a in array]
    elif array.ndim == rank:  # N samples along the batch dimension
        parts = [a[None] for a in array]
    else:
        raise CalibrationError(f"array for input {info.name!r} has rank {array.ndim}, the input has rank {rank}",
                               path=path, fix="save arrays as N x <input shape without batch>")
    if parts:
        _check_sample_shape(path, info, parts[0])
    return [np.ascontiguousarray(p.astype(np.dtype(info.dtype), copy=False)) for p in parts]


def from_arrays(path: Path, inputs: list[TensorInfo], samples: int, holdout: int, seed: int) -> CalibrationSet:
    """Calibration from a ``.npy`` (one input) or ``.npz`` (one key per input) file."""
    try:
        loaded = np.load(str(path), allow_pickle=False)
    except ValueError as exc:
        raise CalibrationError(f"array file needs pickle or is malformed ({exc})", path=path,
                               fix="save plain numeric arrays with numpy.save / numpy.savez") from None
    except (OSError, EOFError) as exc:
        raise CalibrationError(f"cannot read array file ({exc})", path=path,
                               fix="save it again with numpy.save / numpy.savez") from None
    if isinstance(loaded, np.ndarray):
        if len(inputs) != 1:
            raise CalibrationError(f"a .npy file feeds one input, the model has {len(inputs)}", path=path,
                                   fix="use a .npz with one array per input name")
        per_input = {inputs[0].name: _as_samples(path, inputs[0], loaded)}
    else:
        with loaded:
            keys = set(loaded.files)
            if len(inputs) == 1 and len(keys) == 1:
                per_input = {inputs[0].name: _as_samples(path, inputs[0], loaded[next(iter(keys))])}
            else:
                missing = [i.name for i in inputs if i.name not in keys]
                if missing:
                    raise CalibrationError(f"no arrays for input(s) {', '.join(missing)}", path=path,
                                           fix="name the .npz arrays after the model inputs")
                per_input = {i.name: _as_samples(path, i, loaded[i.name]) for i in inputs}
    counts = {len(v) for v in per_input.values()}
    if len(counts) != 1 or 0 in counts:
        raise CalibrationError("inputs have different (or zero) sample counts", path=path,
                               fix="give every input the same number of samples")
    n = counts.pop()
    calib_idx, hold_idx = _split(n, holdout, samples, seed)
    pick = lambda idx: [{k: v[i] for k, v in per_input.items()} for i in idx]  # noqa: E731
    return CalibrationSet(pick(calib_idx), pick(hold_idx), {
        "source": str(path), "kind": "arrays", "available": n, "calibration_samples": len(calib_idx),
        "holdout_samples": len(hold_idx), "seed": seed,
    })


def load_calibration(source: str | Path | None, inputs: list[TensorInfo], spec: PreprocessSpec | None,
                     image_input: str | None, samples: int = 128, holdout: int = 16,
                     seed: int = 0) -> CalibrationSet:
    """Load calibration data from a folder of images, a ``.npy``/``.npz`` file, or the shipped photos.

    With ``source=None`` an image model is calibrated on the photographs that ship
    with edgedl (a warning says the user's own frames calibrate better); a model
    without an image input cannot be calibrated without data.
    """
    if source is None:
        if spec is None or image_input is None:
            raise CalibrationError("INT8 needs calibration data for a model without an image input",
                                   fix="pass --calib-data FILE.npy|FILE.npz with real input samples")
        log.warning("no --calib-data given: calibrating on the %s sample photographs shipped with edgedl; "
                    "frames from your own camera calibrate better", len(image_files(shipped_photos_dir())))
        result = from_images(shipped_photos_dir(), spec, image_input, samples, holdout, seed,
                             augment_to=max(samples, 32))
        result.summary["kind"] = "shipped-photos"
        return result
    path = Path(source)
    if not path.exists():
        raise CalibrationError("calibration data not found", path=path, fix="check the --calib-data path")
    if path.is_dir():
        if spec is None or image_input is None:
            raise CalibrationError("an image folder needs a model with an image input", path=path,
                                   fix="pass --calib-data FILE.npz with arrays for each input")
        return from_images(path, spec, image_input, samples, holdout, seed)
    if path.suffix.lower() in (".npy", ".npz"):
        return from_arrays(path, inputs, samples, holdout, seed)
    raise CalibrationError("unknown calibration data format", path=path,
                           fix="pass a folder of images, a .npy or a .npz file")
