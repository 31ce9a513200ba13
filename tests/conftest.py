"""Shared fixtures: small models are built (and trained) here, once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgedl
from edgedl.demo import DETECTOR, LABELS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--require-gpu", action="store_true", help="fail, rather than skip, gpu tests without CUDA")


def cuda_available() -> bool:
    """Whether a CUDA device can be used from this process (through cuda-python, if installed)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        return False
    err, count = runtime.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or cuda_available():
        return
    if config.getoption("--require-gpu"):
        raise pytest.UsageError("--require-gpu was given but no CUDA device is usable here")
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


@pytest.fixture(autouse=True)
def _subnormal_floats_back_on() -> Iterator[None]:
    """tools/models.py trains with torch.set_flush_denormal(True), a process-wide CPU flag; turn it off after
    each test, so later tests (hypothesis refuses to draw floats without subnormals) see IEEE arithmetic."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """``fake://`` sources (tests/fake_sources.py) registered like any other scheme, on a copy of the registry;
    the test appends the FakeDevices it makes, and their hung reads are released afterwards."""
    from fake_sources import make_reader

    from edgedl.sources import register_reader, registry

    monkeypatch.setattr(registry, "READERS", dict(registry.READERS))
    register_reader("fake", make_reader)
    devices: list = []
    yield devices
    for device in devices:
        device.release()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime tests' bundle (FP32, INT8 CPU and TensorRT Q/DQ, FP16, calibration cache), built once."""
    from fake_tensorrt import tiny_bundle

    return tiny_bundle(tmp_path_factory.mktemp("runtime-bundle"))


@pytest.fixture
def bundle(template: Path, tmp_path: Path) -> Path:
    """A private copy of the template bundle that a test may alter."""
    import shutil

    return Path(shutil.copytree(template, tmp_path / "m.edgedl"))


@pytest.fixture(autouse=True)
def _quiet_threads() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped demo detector as an FP32 bundle, its batch dim dynamic (converting it to INT8 is the demo's job)."""
    out = tmp_path_factory.mktemp("detector") / "det.edgedl"
    return edgedl.convert(DETECTOR, out, preprocess={"preset": "yolo"}, labels=LABELS, task="detect").path


@pytest.fixture
def model(detector: Path) -> Iterator[edgedl.Model]:
    """The demo detector loaded on ONNX Runtime on the CPU."""
    with edgedl.load(detector, backend="onnxruntime") as loaded:
        yield loaded
