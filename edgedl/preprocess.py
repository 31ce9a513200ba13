"""The preprocessing spec and its CPU implementation.

One spec (stored in the bundle manifest) says how a camera frame becomes a
model input. Calibration, the CPU runtime path and the GPU kernels all follow
it, so an INT8 model sees at run time exactly what it saw during calibration.

Frames enter as OpenCV images: ``uint8``, ``H x W x 3``, BGR order.
Order of operations: resize (stretch, letterbox or center-crop) → colour order
→ ``x * scale`` → ``(x - mean) / std`` → layout (NCHW/NHWC) → output dtype.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from edgedl.errors import UsageError

ResizeMode = Literal["stretch", "letterbox", "center-crop"]
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox", "center-crop")
COLOR_ORDERS: tuple[str, ...] = ("RGB", "BGR")
LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")
OUTPUT_DTYPES: tuple[str, ...] = ("float32", "float16", "uint8")

#: Ready-made specs for the conventions most models were trained with.
PRESETS: dict[str, dict[str, Any]] = {
    "imagenet": {
        "resize": "center-crop",
        "color": "RGB",
        "scale": 1 / 255,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    },
    "yolo": {"resize": "letterbox", "color": "RGB", "scale": 1 / 255, "pad_value": 114},
    "raw01": {"resize": "stretch", "color": "RGB", "scale": 1 / 255},
}


@dataclass(frozen=True)
class Geometry:
    """Where the original frame landed inside the model input.

    ``model = original * scale + offset`` per axis, so boxes map back with
    :meth:`to_original`.
    """

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    original_width: int
    original_height: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``[..., 4]`` boxes (x1, y1, x2, y2) in model pixels back to frame pixels, clipped."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[..., 0::2] = (out[..., 0::2] - self.offset_x) / self.scale_x
        out[..., 1::2] = (out[..., 1::2] - self.offset_y) / self.scale_y
        out[..., 0::2] = out[..., 0::2].clip(0, self.original_width)
        out[..., 1::2] = out[..., 1::2].clip(0, self.original_height)
        return out


@dataclass(frozen=True)
class PreprocessSpec:
    """How a BGR uint8 frame becomes the model's image input."""

    width: int
    height: int
    resize: str = "stretch"
    color: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_value: int = 114
    layout: str = "NCHW"
    dtype: str = "float32"
    interpolation: str = field(default="linear")

    def __post_init__(self) -> None:
        checks = [
            (self.resize in RESIZE_MODES, f"resize must be one of {', '.join(RESIZE_MODES)}"),
            (self.color in COLOR_ORDERS, "color must be RGB or BGR"),
            (self.layout in LAYOUTS, "layout must be NCHW or NHWC"),
            (self.dtype in OUTPUT_DTYPES, f"dtype must be one of {', '.join(OUTPUT_DTYPES)}"),
            (self.width > 0 and self.height > 0, "target size must be positive"),
            (len(self.mean) == 3 and len(self.std) == 3, "mean and std take three values"),
            (all(s != 0 and math.isfinite(s) for s in self.std), "std values must be finite and non-zero"),
            (math.isfinite(self.scale) and self.scale != 0, "scale must be a finite, non-zero number"),
            (all(math.isfinite(m) for m in self.mean), "mean values must be finite"),
            (0 <= self.pad_value <= 255, "pad value must be 0..255"),
            (self.interpolation in _INTERPOLATIONS, "interpolation must be linear, nearest or area"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"bad preprocessing spec: {message}",
                                 fix="correct that value (edgedl convert --help lists the options)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Build a spec from its manifest form."""
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The manifest form (plain JSON types)."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def geometry(self, frame_width: int, frame_height: int) -> Geometry:
        """The placement of a ``frame_width x frame_height`` frame in the model input."""
        sx, sy = self.width / frame_width, self.height / frame_height
        if self.resize == "stretch":
            return Geometry(sx, sy, 0.0, 0.0, frame_width, frame_height)
        s = min(sx, sy) if self.resize == "letterbox" else max(sx, sy)
        new_w, new_h = round(frame_width * s), round(frame_height * s)
        # Letterbox pads (positive offset); center-crop cuts (negative offset).
        return Geometry(s, s, (self.width - new_w) // 2, (self.height - new_h) // 2, frame_width, frame_height)

    def resized_size(self, geometry: Geometry) -> tuple[int, int]:
        """Width and height the frame is resized to before padding or cropping."""
        return (round(geometry.original_width * geometry.scale_x), round(geometry.original_height * geometry.scale_y))

    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(a, b)`` so that ``out = pixel * a + b`` in the output colour order."""
        std = np.asarray(self.std, dtype=np.float64)
        a = self.scale / std
        b = -np.asarray(self.mean, dtype=np.float64) / std
        return a.astype(np.float32), b.astype(np.float32)


_INTERPOLATIONS = {"linear": 1, "nearest": 0, "area": 3}  # cv2.INTER_* values


def check_frame(frame: np.ndarray) -> np.ndarray:
    """A BGR ``uint8`` ``H x W x 3`` frame (grey frames are expanded); a one-line UsageError for anything else."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise UsageError("frames must be uint8 numpy arrays (as OpenCV decodes them)")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim == 2 and frame.size:
        import cv2

        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise UsageError(f"frames must be H x W x 3 BGR images, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise UsageError(f"the frame is empty (shape {frame.shape})", fix="check the source: it delivered no pixels")
    return frame


def resize_frame(spec: PreprocessSpec, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
    """Resize (and pad or crop) a BGR frame to the spec's size; return it with its geometry."""
    import cv2

    frame = check_frame(frame)
    h, w = frame.shape[:2]
    geo = spec.geometry(w, h)
    interp = _INTERPOLATIONS[spec.interpolation]
    if spec.resize == "stretch":
        return cv2.resize(frame, (spec.width, spec.height), interpolation=interp), geo
    new_w, new_h = spec.resized_size(geo)
    if new_w < 1 or new_h < 1:
        raise UsageError(f"a {w}x{h} frame letterboxes to {new_w}x{new_h} pixels in a {spec.width}x{spec.height} input",
                         fix="check the source's frame size")
    resized = cv2.resize(frame, (new_w, new_h), interpolation=interp)
    if spec.resize == "letterbox":
        canvas = np.full((spec.height, spec.width, 3), spec.pad_value, dtype=np.uint8)
        x0, y0 = int(geo.offset_x), int(geo.offset_y)
        canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
        return canvas, geo
    x0, y0 = int(-geo.offset_x), int(-geo.offset_y)
    return np.ascontiguousarray(resized[y0 : y0 + spec.height, x0 : x0 + spec.width]), geo


def preprocess(spec: PreprocessSpec, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
    """Turn one BGR uint8 frame into a batch-of-one model input, following ``spec``.

    Returns the input array (``1 x C x H x W`` or ``1 x H x W x C``) and the
    geometry needed to map results back to frame pixels.
    """
    image, geo = resize_frame(spec, frame)
    if spec.color == "RGB":
        image = image[..., ::-1]
    if spec.layout == "NCHW":
        image = image.transpose(2, 0, 1)
    # Reorder the uint8 pixels first (a quarter of the bytes of float32), then normalise in one
    # contiguous pass: several times faster than converting the strided view, and the same values.
    image = np.ascontiguousarray(image)
    if spec.dtype != "uint8":
        a, b = spec.normalization()
        shape = (3, 1, 1) if spec.layout == "NCHW" else (1, 1, 3)
        out = image.astype(np.float32)
        out *= a.reshape(shape)
        out += b.reshape(shape)
        image = out.astype(spec.dtype, copy=False)
    return image[None], geo


def preprocess_batch(spec: PreprocessSpec, frames: list[np.ndarray]) -> np.ndarray:
    """Preprocess several frames into one ``N x ...`` array."""
    return np.concatenate([preprocess(spec, f)[0] for f in frames], axis=0)
