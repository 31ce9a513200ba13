"""TensorRT INT8 calibration caches in TensorRT's own text format.

A cache lets a JetPack release that still calibrates implicitly build an INT8
engine without the calibration images. Each line after the header maps a
tensor name to the hex bits (big-endian IEEE-754 float32) of its scale,
``amax / 127``. TensorRT names layer outputs after the ONNX tensors, so ONNX
tensor names are used directly.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from pathlib import Path

from edgedl.errors import InputFileError
from edgedl.fsutil import atomic_write_bytes
from edgedl.loading.model_file import read_regular_file

#: TensorRT's version number in the header (8.6.1 → 8601). A runtime of another version rewrites it.
DEFAULT_TRT_VERSION = "8601"
CALIBRATOR = "EntropyCalibration2"
CACHE_LIMIT = 64 << 20  # one short line per tensor: even huge models stay under a few MB


def _hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def amax_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Symmetric absolute maxima from (low, high) tensor ranges."""
    return {name: max(abs(float(lo)), abs(float(hi))) for name, (lo, hi) in ranges.items()}


def format_cache(amax: Mapping[str, float], trt_version: str = DEFAULT_TRT_VERSION) -> str:
    """The cache text for tensors' absolute maxima."""
    lines = [f"TRT-{trt_version}-{CALIBRATOR}"]
    for name, value in amax.items():
        # A zero range (a constant-zero tensor) would make a zero scale; TensorRT wants positive scales.
        scale = max(float(value), 1e-8) / 127.0
        lines.append(f"{name}: {_hex(scale)}")
    return "\n".join(lines) + "\n"


def write_cache(path: Path, amax: Mapping[str, float], trt_version: str = DEFAULT_TRT_VERSION) -> None:
    """Write a cache file atomically."""
    atomic_write_bytes(path, format_cache(amax, trt_version).encode("ascii"))


def read_cache(path: Path) -> tuple[str, dict[str, float]]:
    """Parse a cache: (header, tensor name → scale)."""
    try:
        lines = read_regular_file(path, CACHE_LIMIT).decode("ascii").splitlines()
    except (OSError, ValueError) as exc:  # unreadable, a pipe or device, too large, not ASCII
        raise InputFileError(f"cannot read calibration cache ({getattr(exc, 'strerror', None) or exc})", path=path,
                             fix="re-run edgedl convert --int8 --target tensorrt") from None
    if not lines or not lines[0].startswith("TRT-"):
        raise InputFileError("not a TensorRT calibration cache (no TRT- header)", path=path,
                             fix="re-run edgedl convert --int8 --target tensorrt")
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(": ")
        try:
            if not sep or not name or len(value) != 8:
                raise ValueError
            scale = struct.unpack(">f", bytes.fromhex(value))[0]
            if not (math.isfinite(scale) and scale > 0):  # TensorRT would build an engine of NaNs from it
                raise ValueError
            scales[name] = scale
        except (ValueError, struct.error):  # struct.error: hex with spaces in it ("3c 01 02") is too short
            raise InputFileError(f"calibration cache line {number} is malformed", path=path,
                                 fix="re-run edgedl convert --int8 --target tensorrt") from None
    return lines[0], scales
