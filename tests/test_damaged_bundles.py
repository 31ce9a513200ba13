"""Bundles altered after conversion: loading and ``edgedl info`` give one-line answers, not tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgedl
from edgedl.cli.main import main
from edgedl.errors import InputFileError


def test_a_damaged_model_file_is_a_one_line_input_error_even_unverified(bundle: Path) -> None:
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[64:192] = b"\xff" * 128
    model.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="ONNX Runtime cannot load this model") as info:
        edgedl.load(bundle, backend="onnxruntime", precision="fp32", verify=False)  # skip the hash check that would catch it
    assert "\n" not in str(info.value) and "re-run edgedl convert" in str(info.value)


@pytest.mark.parametrize("validation", [{"variants": {"int8": {"outputs": "not a table"}}}, {"variants": [1, 2]},
                                        {"variants": {"int8": {}}, "gate": None}])
def test_info_reports_an_altered_validation_record_instead_of_crashing(bundle: Path, validation: dict) -> None:
    manifest_path = bundle / "edgedl.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["validation"] = validation
    manifest_path.write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["info", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "validation record is malformed" in result.stdout and "Traceback" not in result.output
