"""The CUDA memory layer: for real on a CUDA GPU (``gpu`` marker), and its bookkeeping over the fake driver here."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from fake_tensorrt import FakeCudaDriver, FakeGpu

from edgedl.errors import DeviceError, MissingDependencyError
from edgedl.runtimes.cuda import memory as cuda_memory
from edgedl.runtimes.cuda.memory import CudaPythonDriver, CudaSession, DeviceArray, PyCudaDriver


def round_trip(session: CudaSession) -> None:
    data = np.arange(1 << 16, dtype=np.float32)
    device = session.device_buffer(data.nbytes)
    pinned_in = session.pinned_buffer(data.nbytes)
    pinned_out = session.pinned_buffer(data.nbytes)
    np.copyto(pinned_in.view(np.float32), data)
    session.mark_start()
    session.upload(device, pinned_in)
    session.download(pinned_out, device)
    session.mark_end()
    session.synchronize()
    np.testing.assert_array_equal(pinned_out.view(np.float32), data)
    assert session.elapsed_ms() >= 0


def test_session_owns_and_frees_everything_over_the_fake_driver() -> None:
    driver = FakeCudaDriver(FakeGpu())
    session = CudaSession(0, driver)
    round_trip(session)
    assert driver.live() == 3
    session.close()
    session.close()
    assert driver.live() == 0
    with pytest.raises(DeviceError, match="CUDA device 3 does not exist"):
        CudaSession(3, driver)


def test_device_array_speaks_the_cuda_array_interface() -> None:
    array = DeviceArray(0x1000, (2, 4), np.dtype(np.float16))
    interface = array.__cuda_array_interface__
    assert interface["shape"] == (2, 4) and interface["typestr"] == "<f2" and interface["data"] == (0x1000, False)
    assert array.nbytes == 16


def test_driver_choice_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_memory, "_cached", {})
    monkeypatch.setenv("EDGEDL_CUDA_DRIVER", "opencl")
    with pytest.raises(MissingDependencyError, match="EDGEDL_CUDA_DRIVER='opencl' is not one of cuda-python, pycuda"):
        cuda_memory.get_driver()
    monkeypatch.delenv("EDGEDL_CUDA_DRIVER")
    monkeypatch.setattr(cuda_memory, "DRIVERS", {"cuda-python": ("no_such_module_here", CudaPythonDriver)})
    with pytest.raises(MissingDependencyError, match="no CUDA Python bindings.*edgedl\\[tensorrt\\]"):
        cuda_memory.get_driver()
    count, reason = cuda_memory.device_count_or_reason()
    assert count == 0 and "pip install" in str(reason)


def test_cuda_python_without_a_gpu_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cuda.bindings")
    from conftest import cuda_available

    if cuda_available():
        pytest.skip("a GPU is present")
    monkeypatch.setattr(cuda_memory, "_cached", {})
    monkeypatch.setenv("EDGEDL_CUDA_DRIVER", "cuda-python")
    count, reason = cuda_memory.device_count_or_reason()
    assert count == 0 and reason.startswith("no usable CUDA device: CUDA cudaGetDeviceCount failed")


@pytest.mark.gpu
@pytest.mark.parametrize("driver_name", ["cuda-python", "pycuda"])
def test_real_gpu_round_trip_events_and_worker_thread(driver_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if driver_name == "pycuda":
        pytest.importorskip("pycuda")
    monkeypatch.setattr(cuda_memory, "_cached", {})
    monkeypatch.setenv("EDGEDL_CUDA_DRIVER", driver_name)
    driver = cuda_memory.get_driver()
    assert isinstance(driver, CudaPythonDriver if driver_name == "cuda-python" else PyCudaDriver)
    session = CudaSession(0)
    info = session.info
    assert info.name and info.compute_capability[0] >= 5 and info.cuda_runtime.count(".") == 1
    with session.active():
        round_trip(session)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with session.active():  # a thread that never touched CUDA before
                round_trip(session)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert not errors, errors
    session.close()


@pytest.mark.gpu
def test_real_gpu_inference_allocates_nothing_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_memory, "_cached", {})
    session = CudaSession(0)
    calls = {"malloc": 0}
    original = session.driver.malloc

    def counting(nbytes: int) -> int:
        calls["malloc"] += 1
        return original(nbytes)

    monkeypatch.setattr(session.driver, "malloc", counting)
    device = session.device_buffer(1024)
    pinned = session.pinned_buffer(1024)
    with session.active():
        for _ in range(100):
            session.upload(device, pinned)
            session.download(pinned, device)
        session.synchronize()
    assert calls["malloc"] == 1
    session.close()
