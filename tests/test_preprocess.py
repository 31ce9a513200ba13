"""The preprocessing spec: one implementation, exact geometry, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgedl.errors import UsageError
from edgedl.preprocess import PRESETS, PreprocessSpec, preprocess, preprocess_batch


def frame(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_stretch_rgb_nchw_matches_hand_computation() -> None:
    import cv2

    spec = PreprocessSpec(width=32, height=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    img = frame()
    out, geo = preprocess(spec, img)
    expected = cv2.resize(img, (32, 16), interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float32) / 255
    expected = ((expected - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.5])).transpose(2, 0, 1)[None]
    assert out.shape == (1, 3, 16, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert (geo.scale_x, geo.scale_y) == (0.5, 16 / 48)


def test_letterbox_pads_and_maps_boxes_back_exactly() -> None:
    spec = PreprocessSpec(width=64, height=64, resize="letterbox", pad_value=114, dtype="uint8", layout="NHWC",
                          color="BGR")
    img = np.full((50, 100, 3), 7, np.uint8)
    out, geo = preprocess(spec, img)
    assert out.shape == (1, 64, 64, 3)
    assert geo.scale_x == geo.scale_y == 0.64 and geo.offset_x == 0 and geo.offset_y == 16
    assert (out[0, :16] == 114).all() and (out[0, 16:48] == 7).all() and (out[0, 48:] == 114).all()
    box = np.array([[10.0, 20.0, 60.0, 40.0]])  # in original pixels
    model_box = box * 0.64 + np.array([0, 16, 0, 16])
    np.testing.assert_allclose(geo.to_original(model_box), box, atol=1e-4)


def test_center_crop_covers_target() -> None:
    spec = PreprocessSpec(width=32, height=32, resize="center-crop", dtype="uint8", color="BGR", layout="NHWC")
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 38:42] = 255  # a bright stripe in the centre survives the crop
    out, geo = preprocess(spec, img)
    assert out.shape == (1, 32, 32, 3) and geo.offset_x < 0
    assert out[0, :, 14:18].max() == 255 and out[0, :, :4].max() == 0


def test_grayscale_frames_are_expanded_and_batches_stack() -> None:
    spec = PreprocessSpec(width=8, height=8, **PRESETS["imagenet"])
    batch = preprocess_batch(spec, [frame()[..., 0], frame()])
    assert batch.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(batch[0, 0], batch[0, 1], rtol=0, atol=0.3)  # same pixel, different mean/std


@pytest.mark.parametrize("bad", [{"resize": "fill"}, {"color": "RGBA"}, {"std": (1.0, 0.0, 1.0)},
                                 {"layout": "CHW"}, {"dtype": "int4"}, {"width": 0}, {"pad_value": 300}])
def test_bad_spec_is_a_usage_error(bad: dict) -> None:
    values = {"width": 8, "height": 8, **bad}
    with pytest.raises(UsageError):
        PreprocessSpec(**values)


def test_bad_frames_are_refused() -> None:
    spec = PreprocessSpec(width=8, height=8)
    with pytest.raises(UsageError, match="uint8"):
        preprocess(spec, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(UsageError, match="H x W x 3"):
        preprocess(spec, np.zeros((8, 8, 4), np.uint8))


def test_spec_round_trips_through_dict() -> None:
    spec = PreprocessSpec(width=8, height=4, **PRESETS["yolo"])
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
