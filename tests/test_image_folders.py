"""Real image folders: grey, alpha, 16-bit and EXIF-rotated files calibrate and stream as OpenCV's IMREAD_COLOR
decodes them, calibration counts what was converted, and only files that cannot be decoded are refused."""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from tiny import tiny_classifier

from edgedl.cli.main import main
from edgedl.converters.calibration import load_calibration
from edgedl.errors import CalibrationError
from edgedl.images import decode_bgr, read_bytes, stored_form
from edgedl.manifest import TensorInfo
from edgedl.preprocess import PreprocessSpec
from edgedl.sources import open_source

INPUT = TensorInfo("images", "float32", ["batch", 3, 16, 16], "NCHW")
SPEC = PreprocessSpec(width=16, height=16)
RNG = np.random.default_rng(7)
GREY = RNG.integers(0, 256, (12, 20), dtype=np.uint8)
BGRA = RNG.integers(0, 256, (12, 20, 4), dtype=np.uint8)
BGRA[0, 0, 3] = 0  # a fully transparent pixel keeps its stored colour: alpha is dropped, not composited
GREY16 = RNG.integers(0, 65536, (12, 20), dtype=np.uint16)
COLOUR16 = RNG.integers(0, 65536, (12, 20, 3), dtype=np.uint16)


def _png_grey_alpha(path: Path, grey: np.ndarray, alpha: np.ndarray) -> None:
    """A grey+alpha PNG (colour type 4), which cv2.imwrite cannot write (it takes 1, 3 or 4 channels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + np.dstack([grey, alpha])[y].tobytes() for y in range(grey.shape[0]))
    header = struct.pack(">IIBBBBB", grey.shape[1], grey.shape[0], 8, 4, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _jpeg_rotated(path: Path, image: np.ndarray) -> None:
    """A JPEG whose EXIF orientation (6) says: turn it 90 degrees clockwise to view it."""
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    exif = b"Exif\0\0" + b"MM\0*" + struct.pack(">I", 8) + ifd
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(exif)) + exif + jpeg[2:])


#: Each kind of file, with what decoding it to 8-bit BGR converts (OpenCV's PNG codec expands grey+alpha to BGRA).
KINDS = {
    "colour.png": (), "grey.png": ("grayscale",), "grey.jpg": ("grayscale",), "grey_alpha.png": ("with alpha",),
    "bgra.png": ("with alpha",), "bgra.webp": ("with alpha",), "grey16.png": ("grayscale", "16-bit"),
    "grey16.tif": ("grayscale", "16-bit"), "colour16.png": ("16-bit",), "colour16.tif": ("16-bit",),
    "bgra16.png": ("with alpha", "16-bit"), "rotated.jpg": (),
}


def write_kinds(folder: Path) -> dict[str, Path]:
    """One file of each kind in ``folder``."""
    folder.mkdir(exist_ok=True)
    arrays = {"colour.png": BGRA[..., :3], "grey.png": GREY, "grey.jpg": GREY, "bgra.png": BGRA, "grey16.png": GREY16,
              "grey16.tif": GREY16, "colour16.png": COLOUR16, "colour16.tif": COLOUR16,
              "bgra16.png": np.dstack([COLOUR16, GREY16])}
    for name, array in arrays.items():
        assert cv2.imwrite(str(folder / name), array)
    assert cv2.imwrite(str(folder / "bgra.webp"), BGRA, [cv2.IMWRITE_WEBP_QUALITY, 101])  # 101: lossless
    _png_grey_alpha(folder / "grey_alpha.png", GREY, BGRA[..., 3])
    _jpeg_rotated(folder / "rotated.jpg", BGRA[..., :3])
    return {name: folder / name for name in KINDS}


def test_every_kind_decodes_to_what_imread_color_gives(tmp_path: Path) -> None:
    files = write_kinds(tmp_path)
    for name, path in files.items():
        image = decode_bgr(read_bytes(path))
        assert image is not None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert np.array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR)), name
        form = stored_form(read_bytes(path))
        assert form is not None and form.conversions() == KINDS[name], name
    decoded = {name: decode_bgr(read_bytes(path)) for name, path in files.items()}
    for name in ("grey.png", "grey_alpha.png"):  # grey repeated into B, G and R
        assert all(np.array_equal(decoded[name][..., c], GREY) for c in range(3)), name
    for name in ("bgra.png", "bgra.webp"):  # the stored colour, alpha dropped, nothing composited
        assert np.array_equal(decoded[name], cv2.imread(str(files[name]), cv2.IMREAD_UNCHANGED)[..., :3]), name
    assert np.array_equal(decoded["bgra.png"], BGRA[..., :3])  # the transparent pixel keeps its colour, not black
    assert np.array_equal(decoded["grey16.png"][..., 0], (GREY16 >> 8).astype(np.uint8))  # PNG keeps the high byte
    assert np.array_equal(decoded["colour16.png"], (COLOUR16 >> 8).astype(np.uint8))
    assert np.abs(decoded["colour16.tif"].astype(int) - COLOUR16 / 257).max() <= 1  # colour TIFF rounds
    assert decoded["rotated.jpg"].shape == (20, 12, 3)  # the EXIF orientation is applied (12 x 20 stored)


def test_a_mixed_folder_calibrates_and_the_summary_counts_what_was_converted(tmp_path: Path) -> None:
    write_kinds(tmp_path / "mixed")
    data = load_calibration(tmp_path / "mixed", [INPUT], SPEC, "images", samples=100, holdout=3, seed=0)
    assert len(data.calibration) + len(data.holdout) == len(KINDS)
    assert data.summary["converted_to_8bit_bgr"] == {"16-bit": 5, "grayscale": 4, "with alpha": 4}
    assert all(s["images"].shape == (1, 3, 16, 16) for s in data.calibration + data.holdout)
    plain = tmp_path / "plain"
    plain.mkdir()
    for i in range(3):
        cv2.imwrite(str(plain / f"{i}.png"), BGRA[..., :3])
    assert load_calibration(plain, [INPUT], SPEC, "images", holdout=1).summary["converted_to_8bit_bgr"] == {}


def _error(folder: Path) -> str:
    with pytest.raises(CalibrationError) as info:
        load_calibration(folder, [INPUT], SPEC, "images")
    message = str(info.value)
    assert "\n" not in message and "fix:" in message
    return message


def test_undecodable_and_float_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    write_kinds(broken)
    (broken / "grey.png").write_bytes(b"\x89PNG truncated")
    message = _error(broken)
    assert "grey.png: image cannot be decoded" in message and "not an image" in message
    (broken / "grey.png").write_bytes(b"")
    assert "grey.png: image cannot be decoded" in _error(broken)
    hdr = tmp_path / "hdr"  # float pixels: OpenCV maps them to 8 bits differently per codec (and not at all for TIFF)
    write_kinds(hdr)
    cv2.imwrite(str(hdr / "float.tif"), RNG.random((12, 20, 3)).astype(np.float32))
    message = _error(hdr)
    assert "float.tif: image holds 32-bit float pixels" in message and "tone-map" in message


def test_the_folder_source_yields_bgr_frames_of_every_kind_and_skips_undecodable_files(tmp_path: Path) -> None:
    files = write_kinds(tmp_path / "photos")
    (tmp_path / "photos" / "zz_broken.png").write_bytes(b"not a png")
    frames = []
    with open_source(tmp_path / "photos") as stream:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (frame := stream.read(timeout=1.0)):
            frames.append(frame)
        events = stream.events()
    assert sorted(Path(f.source).name for f in frames) == sorted(files)
    for frame in frames:
        assert frame.image.dtype == np.uint8 and frame.image.ndim == 3 and frame.image.shape[2] == 3
        assert np.array_equal(frame.image, cv2.imread(frame.source, cv2.IMREAD_COLOR)), frame.source
    skipped = [e.message for e in events if e.kind == "skipped"]
    assert len(skipped) == 1 and "zz_broken.png" in skipped[0] and "cannot decode" in skipped[0]


def test_convert_calibrates_on_a_mixed_folder_and_says_what_it_converted(tmp_path: Path) -> None:
    write_kinds(tmp_path / "mixed")
    out = tmp_path / "m.edgedl"
    result = CliRunner().invoke(main, ["convert", str(tiny_classifier(tmp_path / "m.onnx")), "--int8", "--calib-data",
                                       str(tmp_path / "mixed"), "-o", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    calibration = json.loads((out / "edgedl.json").read_text())["calibration"]
    assert calibration["converted_to_8bit_bgr"] == {"16-bit": 5, "grayscale": 4, "with alpha": 4}
    assert "5 16-bit, 4 grayscale, 4 with alpha converted to 8-bit BGR" in result.output
