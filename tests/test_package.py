"""The package imports the way DESIGN.md promises, fast and without heavy modules."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

HEAVY = ["torch", "keras", "tensorflow", "tensorrt", "openvino", "pycuda", "cuda", "motmetrics", "pandas"]


def _run(code: str) -> str:
    # From a neutral folder: run from the checkout, `python -c` would import ./edgedl instead of the installed one.
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                              cwd=cwd).stdout


def test_import_loads_no_heavy_module() -> None:
    loaded = json.loads(_run("import sys, json, edgedl; print(json.dumps(sorted(sys.modules)))"))
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
    # onnxruntime and cv2 are core but not needed just to import edgedl either.
    assert "onnxruntime" not in loaded and "cv2" not in loaded


def test_cli_help_loads_no_heavy_module_and_is_fast() -> None:
    code = ("import sys, json, time; t=time.perf_counter(); from click.testing import CliRunner; "
            "from edgedl.cli.main import main; r=CliRunner().invoke(main, ['convert','--help']); "
            "print(json.dumps([r.exit_code, time.perf_counter()-t, sorted(sys.modules)]))")
    start = time.perf_counter()
    code_, seconds, loaded = json.loads(_run(code))
    assert code_ == 0
    assert seconds < 1.0, f"edgedl --help took {seconds:.2f}s"
    assert time.perf_counter() - start < 5  # whole interpreter, generous for a loaded CI machine
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_subpackages_import_under_edgedl_namespace() -> None:
    out = _run("import edgedl.converters as c, edgedl.runtimes as r, edgedl; "
               "print(c.__name__, r.__name__, edgedl.__version__)")
    assert out.split()[:2] == ["edgedl.converters", "edgedl.runtimes"]


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "edgedl.cli.main", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "edgedl" in result.stdout


def test_public_functions_stay_callable_after_their_modules_load() -> None:
    # A submodule named like a public function would replace it on the package once imported.
    out = _run("import edgedl, edgedl.conversion, edgedl.cli.main; print(callable(edgedl.convert))")
    assert out.strip() == "True"
