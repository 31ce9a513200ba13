"""INT8 accuracy recovery (edgedl.converters.recover and its techniques): each technique does what it claims, and
convert wins back with them what it would otherwise give up to float."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from recovery_models import outlier_net, samples

import edgedl
from edgedl.errors import UsageError
from edgedl.options import CalibrationOptions
from edgedl.vocabulary import RECOVERY_TECHNIQUES


def test_recover_option_takes_auto_none_and_lists_in_the_vocabulary() -> None:
    assert CalibrationOptions().techniques == RECOVERY_TECHNIQUES
    assert CalibrationOptions(recover="none").techniques == ()
    assert CalibrationOptions(recover="bias,equalize").techniques == ("equalize", "bias")
    with pytest.raises(UsageError, match="recovery technique"):
        CalibrationOptions(recover="equalize,magic")


@pytest.fixture(scope="module")
def outlier_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, edgedl.Bundle]:
    folder = tmp_path_factory.mktemp("recover")
    onnx.save_model(outlier_net(), str(folder / "outliers.onnx"))
    np.save(folder / "calib.npy", np.concatenate([s["x"] for s in samples(40)]))
    return {recover: edgedl.convert(folder / "outliers.onnx", folder / f"{recover}.edgedl", int8=True, target="all",
                                    calib_data=folder / "calib.npy", calib_samples=24, holdout=16, task="raw",
                                    recover=recover, allow_mixed=True)
            for recover in ("none", "equalize", "auto")}


def test_convert_recovers_outlier_channels_instead_of_keeping_layers_in_float(outlier_bundles) -> None:
    for key in ("int8", "int8-trt"):
        plain = outlier_bundles["none"].manifest.validation["variants"][key]
        recovered = outlier_bundles["equalize"].manifest.validation["variants"][key]
        assert plain["excluded_nodes"], f"plain {key} must need float layers for this test to mean anything"
        assert len(recovered["excluded_nodes"]) < len(plain["excluded_nodes"])
        assert plain["recovery"] is None
        step = recovered["recovery"][0]
        assert step["technique"] == "equalize" and step["kept"] and step["shortfall_after"] < step["shortfall_before"]


def test_recovery_goes_on_after_the_first_pass_while_each_technique_brings_int8_closer(outlier_bundles) -> None:
    for key in ("int8", "int8-trt"):
        steps = outlier_bundles["auto"].manifest.validation["variants"][key]["recovery"]
        assert [step["technique"] for step in steps] == list(RECOVERY_TECHNIQUES)
        assert steps[0]["passed"], "equalization alone must pass for this test to mean anything"
        best = steps[0]["shortfall_after"]
        for step in steps[1:]:
            assert step["shortfall_before"] == best
            if step["kept"]:
                assert step["shortfall_after"] < best
                best = step["shortfall_after"]
    trt = outlier_bundles["auto"].manifest.validation["variants"]["int8-trt"]["recovery"]  # one scheme, not timed
    assert any(step["kept"] for step in trt[1:]), "no later technique was kept: the test means nothing"


def test_the_convert_report_shows_what_recovery_bought(outlier_bundles) -> None:
    from rich.console import Console

    from edgedl.report import recovery_table

    table = recovery_table(outlier_bundles["equalize"].manifest)
    assert table is not None
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "equalize" in text and "int8-trt" in text
    assert recovery_table(outlier_bundles["none"].manifest) is None
