"""TensorRT calibration caches are written in TensorRT's text format."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from edgedl.errors import InputFileError
from edgedl.loading.calib_cache import amax_from_ranges, format_cache, read_cache, write_cache


def test_cache_lines_hold_big_endian_scale_bits(tmp_path: Path) -> None:
    amax = amax_from_ranges({"images": (0.0, 1.0), "/conv1/Conv_output_0": (-6.35, 3.0)})
    text = format_cache(amax, "8601")
    lines = text.splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert lines[1] == "images: " + struct.pack(">f", 1.0 / 127).hex()
    assert lines[2] == "/conv1/Conv_output_0: 3d4ccccd"  # 6.35 / 127 = 0.05 as float32 bits
    write_cache(tmp_path / "c.cache", amax)
    header, scales = read_cache(tmp_path / "c.cache")
    assert header.startswith("TRT-") and scales["/conv1/Conv_output_0"] == pytest.approx(0.05)


def test_bad_cache_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.cache").write_text("hello\n")
    with pytest.raises(InputFileError, match="no TRT- header"):
        read_cache(tmp_path / "a.cache")
    (tmp_path / "b.cache").write_text("TRT-8601-EntropyCalibration2\nx: zz\n")
    with pytest.raises(InputFileError, match="line 2"):
        read_cache(tmp_path / "b.cache")
