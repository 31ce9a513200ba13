"""The INT8 accuracy-recovery techniques each do what they claim: equalization keeps the FP32 function and evens
out channel ranges, range choice clips only what is worth clipping, bias correction takes back the mean shift,
adaptive rounding beats nearest rounding. The model: tests/recovery_models.py's outlier-channel network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from recovery_models import outlier_net, run, samples

from edgedl.converters.activations import channel_peaks
from edgedl.converters.bias_correction import correct_biases
from edgedl.converters.equalize import equalize, find_sites
from edgedl.converters.int8_grid import fake_quant, weight_scales
from edgedl.converters.quantize import CPU_SCHEMES, Quantizer
from edgedl.converters.ranges import choose, choose_ranges


def _spread(peaks: np.ndarray) -> float:
    return float(peaks.max() / np.median(peaks))


def test_equalization_keeps_the_fp32_function_and_evens_out_channel_ranges() -> None:
    model, feeds = outlier_net(), samples(8)
    sites = {s.tensor for s in find_sites(model)}
    # The affine after hard-swish feeds only a conv: equalizable. The ReLU after the stem conv too (positively
    # homogeneous). Hard-swish itself is not, so nothing is moved across it.
    assert {"a", "s_act"} <= sites and "h" not in sites and "d" not in sites
    equalized, spread = equalize(model, feeds)
    for before, after in zip(run(model, feeds), run(equalized, feeds), strict=True):
        np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * float(np.abs(before).max()))
    before = _spread(channel_peaks(model, ["a"], feeds)["a"])
    after = _spread(channel_peaks(equalized, ["a"], feeds)["a"])
    assert before > 100 and after < 10, (before, after)
    assert spread["a"] > 10


def test_range_choice_clips_a_heavy_tail_and_keeps_min_max_for_a_uniform_tensor() -> None:
    rng = np.random.default_rng(0)
    uniform = rng.uniform(0, 6, 50_000)
    heavy = rng.standard_t(2, 50_000)  # a few values out at 100x the typical one
    for symmetric in (False, True):
        kept = choose(uniform, float(uniform.min()), float(uniform.max()), symmetric)
        assert kept.method == "minmax" and kept.relative_error == 1.0
        clipped = choose(heavy, float(heavy.min()), float(heavy.max()), symmetric)
        assert clipped.method != "minmax" and max(-clipped.low, clipped.high) < np.abs(heavy).max(), clipped
        assert clipped.relative_error < 0.95


def test_range_choice_does_not_depend_on_the_order_calibration_lists_tensors_in(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from onnxruntime.quantization.calibrate import TensorsData

    from edgedl.converters import ranges as range_module

    monkeypatch.setattr(range_module, "SAMPLED_VALUES", 256)  # fewer than a tensor holds: values are drawn at random

    model, feeds = outlier_net(), samples(8)
    quantizer = Quantizer(tmp_path / "fp32.onnx", feeds, "minmax", tmp_path)
    onnx.save_model(model, str(quantizer.fp32_path))
    ranges = quantizer.ranges(True)
    backwards = TensorsData(ranges.calibration_method, dict(reversed(list(ranges.data.items()))))
    chosen = [choose_ranges(model, data, feeds, symmetric=True)[0].data for data in (ranges, backwards)]
    assert len(chosen[0]) > 2
    for name, value in chosen[0].items():
        assert np.array_equal(value.range_value, chosen[1][name].range_value), name


def test_bias_correction_takes_back_the_mean_shift_of_quantized_convs(tmp_path: Path) -> None:
    model, feeds = outlier_net(), samples(16)
    quantizer = Quantizer(tmp_path / "fp32.onnx", feeds, "minmax", tmp_path)
    onnx.save_model(model, str(quantizer.fp32_path))
    ranges = quantizer.ranges(False)
    corrected, largest = correct_biases(model, ranges, feeds, symmetric=False)
    assert largest > 0
    onnx.save_model(corrected, str(tmp_path / "corrected.onnx"))
    scheme = CPU_SCHEMES[1]  # QDQ on convolutions only: the conv outputs are what bias correction fixes
    plain = onnx.load(str(quantizer.quantize(scheme, tmp_path / "plain.q.onnx")))
    fixed_quantizer = Quantizer(tmp_path / "corrected.onnx", feeds, "minmax", tmp_path / "fixed")
    (tmp_path / "fixed").mkdir()
    fixed = onnx.load(str(fixed_quantizer.quantize(scheme, tmp_path / "fixed.q.onnx")))
    reference = np.concatenate(run(model, feeds))

    def mean_error(quantized: onnx.ModelProto) -> float:
        out = np.concatenate(run(quantized, feeds))
        return float(np.abs((out - reference).mean(axis=(0, 2, 3))).mean())

    assert mean_error(fixed) < 0.7 * mean_error(plain)


def test_adaptive_rounding_beats_nearest_rounding_on_the_layer_output(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgedl.converters.adaround import collect_layers, round_layer
    from edgedl.converters.int8_grid import quantized_weight

    model, feeds = outlier_net(), samples(8)
    quantizer = Quantizer(tmp_path / "fp32.onnx", feeds, "minmax", tmp_path)
    onnx.save_model(model, str(quantizer.fp32_path))
    layer = next(layer for layer in collect_layers(model, quantizer.ranges(False), feeds, False) if layer.node == "stem")
    rounded = round_layer(layer, iterations=120)
    assert layer.output_error(rounded.astype(np.float64)) < layer.output_error(quantized_weight(layer.weight))
    # On the grid the quantizer will compute (same per-channel scales), so Q/DQ reproduces the weights exactly.
    scale = weight_scales(rounded).reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(weight_scales(rounded), weight_scales(layer.weight), rtol=1e-6)
    np.testing.assert_allclose(rounded / scale, np.round(rounded / scale), atol=1e-4)


def test_fake_quant_keeps_zero_and_the_range_ends() -> None:
    x = np.array([0.0, -1.0, 2.0, 5.0], np.float32)
    np.testing.assert_allclose(fake_quant(x, -1.0, 2.0, False)[:3], x[:3], atol=1e-6)
    assert fake_quant(x, -1.0, 2.0, False)[3] == pytest.approx(2.0, abs=1e-6)
    assert fake_quant(x, -1.0, 2.0, True)[0] == 0.0
