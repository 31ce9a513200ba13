"""``edgedl build``, ``edgedl compare`` and the engines ``edgedl info`` lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_tensorrt import install

from edgedl.cli.main import main


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def test_build_without_tensorrt_says_what_is_missing_and_how_to_get_it(bundle: Path) -> None:
    code, out, err = invoke(["build", str(bundle)])
    assert code == 9
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "tensorrt module is not installed" in err and "python3-libnvinfer" in err
    assert not (bundle / "engines").exists()


def test_build_caches_once_and_info_lists_the_engine_with_its_key(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install("10.3.0", monkeypatch=monkeypatch)
    code, out, err = invoke(["build", str(bundle), "--precision", "fp16", "--shape", "images=1x3x16x16:2x3x16x16:4x3x16x16"])
    assert code == 0, err
    assert out.startswith("built: engine fp32-fp16-") and "TensorRT 10.3.0" in out and "Orin (fake)" in out
    assert "parsing model.onnx" in err, "build progress goes to stderr"
    code, out, _ = invoke(["build", str(bundle), "--precision", "fp16", "--shape", "images=1x3x16x16:2x3x16x16:4x3x16x16"])
    assert code == 0 and out.startswith("already cached: engine fp32-fp16-")
    code, out, _ = invoke(["info", str(bundle)])
    assert code == 0
    line = next(line for line in out.splitlines() if line.strip().startswith("fp32-fp16-"))
    assert "[ok]" in line and "TensorRT 10.3.0" in line and "CUDA 12.6" in line and "sm 8.7" in line
    assert "images 1x3x16x16/2x3x16x16/4x3x16x16" in line
    code, _, err = invoke(["build", str(bundle), "--shape", "images=1x3x16x16:2x3x16x16"])
    assert code == 2 and "MIN:OPT:MAX" in err


def test_info_without_engines_says_how_to_build_one(bundle: Path) -> None:
    code, out, _ = invoke(["info", str(bundle)])
    assert code == 0 and "cached engines: none (run edgedl build" in out


def test_compare_reports_agreement_and_fails_beyond_tolerance(bundle: Path) -> None:
    code, out, err = invoke(["compare", str(bundle), "--backends", "onnxruntime", "--precisions", "fp32,int8,fp16"])
    assert code == 0, err
    assert "Agreement with onnxruntime/fp32" in out and "onnxruntime/int8" in out and "onnxruntime/fp16" in out
    assert "agree with onnxruntime/fp32 within tolerance" in out
    code, out, err = invoke(["compare", str(bundle), "--backends", "onnxruntime", "--precisions", "fp32,int8",
                             "--atol", "1e-7"])
    assert code == 7
    assert "FAIL" in out and "check(s) failed; first: onnxruntime/int8: output logits: |diff| exceeds atol" in err
    code, _, err = invoke(["compare", str(bundle), "--backends", "onnxruntime", "--precisions", "fp32"])
    assert code == 2 and "nothing to compare: every run loads onnxruntime/fp32" in err


def test_compare_with_data_and_bad_backend(bundle: Path, template: Path) -> None:
    calib = template.parent / "calib.npy"
    code, out, err = invoke(["compare", str(bundle), "--backends", "onnxruntime,openvino", "--precisions", "fp32",
                             "--data", str(calib), "--samples", "4", "--atol", "1e-4"])
    if "openvino is not available" in err:
        pytest.skip("openvino not installed")
    assert code == 0, err
    assert f"4 samples from {calib}" in out
    code, _, err = invoke(["compare", str(bundle), "--backends", "cuda"])
    assert code == 2 and "unknown backend 'cuda'" in err
