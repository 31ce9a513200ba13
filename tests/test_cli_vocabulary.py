"""The CLI's choices and defaults come from edgedl's vocabularies and option objects, and take any case."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from tiny import tiny_classifier

import edgedl.conversion as conversion
from edgedl.bundle import Bundle
from edgedl.cli.main import main
from edgedl.options import CalibrationOptions, ExportOptions, Gate, VariantOptions
from edgedl.preprocess import COLOR_ORDERS, LAYOUTS, PRESETS, RESIZE_MODES
from edgedl.runtimes.select import INSTALL, MODULES
from edgedl.tracking import TRACKERS
from edgedl.vocabulary import (
    AUTO,
    BACKENDS,
    CALIBRATION_METHODS,
    DEVICE_PREPROCESS,
    EXPORTERS,
    PRECISIONS,
    TARGETS,
    TASKS,
)

#: Every choice option of every command, and the vocabulary it offers.
VOCABULARIES: dict[tuple[str, str], tuple[str, ...]] = {
    ("convert", "calib_method"): CALIBRATION_METHODS,
    ("convert", "preset"): tuple(PRESETS),
    ("convert", "color"): COLOR_ORDERS,
    ("convert", "resize"): RESIZE_MODES,
    ("convert", "task"): TASKS,
    ("convert", "target"): TARGETS,
    ("convert", "layout"): LAYOUTS,
    ("convert", "exporter"): EXPORTERS,
    ("build", "precision"): (AUTO, *PRECISIONS),
    ("profile", "backend"): (AUTO, *BACKENDS),
    ("profile", "precision"): (AUTO, *PRECISIONS),
    ("run", "backend"): (AUTO, *BACKENDS),
    ("run", "precision"): (AUTO, *PRECISIONS),
    ("run", "preset"): tuple(PRESETS),
    ("run", "device_preprocess"): DEVICE_PREPROCESS,
    ("run", "tracker"): TRACKERS,
    ("demo", "backend"): (AUTO, *BACKENDS),
}


def _params() -> dict[tuple[str, str], click.Parameter]:
    return {(name, param.name or ""): param for name, command in main.commands.items() for param in command.params}


def test_every_choice_is_a_vocabulary_in_any_case() -> None:
    choices = {key: param.type for key, param in _params().items() if isinstance(param.type, click.Choice)}
    assert {key: tuple(choice.choices) for key, choice in choices.items()} == VOCABULARIES
    assert [key for key, choice in choices.items() if choice.case_sensitive] == []


def test_every_backend_has_a_module_and_an_install_hint() -> None:
    assert set(MODULES) == set(INSTALL) == set(BACKENDS)


def test_defaults_are_the_option_objects_defaults() -> None:
    params = _params()
    for command in ("convert", "compare"):
        for name in ("min_cosine", "min_top1", "min_detections"):
            assert params[command, name].default == getattr(Gate(), name), (command, name)
    expected = {"calib_samples": CalibrationOptions().samples, "calib_method": CalibrationOptions().method,
                "seed": CalibrationOptions().seed, "target": VariantOptions().target, "exporter": ExportOptions().exporter}
    assert {name: params["convert", name].default for name in expected} == expected
    api = inspect.signature(conversion.convert).parameters
    assert {name: api[name].default for name in expected} == expected
    assert api["holdout"].default == CalibrationOptions().holdout


def test_convert_takes_choices_in_any_case_and_passes_on_the_vocabulary_word(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = conversion.convert
    passed: dict[str, Any] = {}

    def recording(*args: Any, **kwargs: Any) -> Any:
        passed.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(conversion, "convert", recording)
    model = tiny_classifier(tmp_path / "net.onnx")
    result = CliRunner().invoke(main, ["convert", str(model), "-o", str(tmp_path / "net.edgedl"), "--preset", "IMAGENET",
                                       "--color", "rgb", "--resize", "Stretch", "--task", "CLASSIFY", "--target", "ALL",
                                       "--calib-method", "MinMax", "--exporter", "Auto"])
    assert result.exit_code == 0, result.stderr
    assert {k: passed[k] for k in ("task", "target", "calib_method", "exporter")} == {
        "task": "classify", "target": "all", "calib_method": "minmax", "exporter": "auto"}
    assert {k: passed["preprocess"][k] for k in ("preset", "color", "resize")} == {
        "preset": "imagenet", "color": "RGB", "resize": "stretch"}
    spec = Bundle.open(tmp_path / "net.edgedl").manifest.preprocess
    assert spec is not None and (spec.color, spec.resize, spec.mean) == ("RGB", "stretch", PRESETS["imagenet"]["mean"])


def test_run_and_compare_take_backends_and_precisions_in_any_case(bundle: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(bundle), "--source", "synthetic://shapes", "--max-frames", "2", "-q",
                                       "--backend", "ONNXRuntime", "--precision", "FP16", "--device-preprocess", "CPU"])
    assert result.exit_code == 0, result.stderr
    assert "(fp16)" in result.stderr
    result = CliRunner().invoke(main, ["compare", str(bundle), "--backends", "ONNXRuntime", "--precisions", "FP32,Int8"])
    assert result.exit_code == 0, result.stderr
    assert "onnxruntime/int8" in result.stdout


def test_an_unknown_word_is_still_refused_in_one_line(tmp_path: Path) -> None:
    model = tiny_classifier(tmp_path / "net.onnx")
    result = CliRunner().invoke(main, ["convert", str(model), "--color", "rgba"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "'--color'" in lines[0] and "'rgba'" in lines[0], result.stderr
    assert not (tmp_path / "net.edgedl").exists()
