"""CUDA memory for one model: device and pinned host buffers, one stream, timing events.

Written against cuda-python's runtime API (``cuda.bindings.runtime``: cudaMalloc,
cudaMallocHost, cudaMemcpyAsync, streams, events), with pycuda as an alternative
where that is what a device has (``EDGEDL_CUDA_DRIVER=pycuda`` picks it when both
are installed). There is no ``pycuda.autoinit``: the device is made current in
whichever thread calls, so a model loaded in one thread runs from a worker thread.

Everything is allocated when the model loads and freed by :meth:`CudaSession.close`;
inference itself allocates nothing on the device or in pinned memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgedl.errors import DeviceError, MissingDependencyError

INSTALL_HINT = "pip install 'edgedl[tensorrt]' (cuda-python), or pycuda where that is what the device has"


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine depends on about the GPU and the CUDA stack."""

    name: str
    compute_capability: tuple[int, int]
    total_memory: int
    cuda_runtime: str
    cuda_driver: str


class Driver(Protocol):
    """The few CUDA calls edgedl needs, over cuda-python or pycuda. Pointers are ints."""

    name: str

    def device_count(self) -> int: ...
    def activate(self, device: int) -> contextlib.AbstractContextManager[None]: ...
    def device_info(self, device: int) -> DeviceInfo: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def malloc_host(self, nbytes: int) -> np.ndarray: ...
    def free_host(self, array: np.ndarray) -> None: ...
    def stream_create(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def stream_synchronize(self, stream: Any) -> None: ...
    def stream_destroy(self, stream: Any) -> None: ...
    def copy_htod(self, dst: int, src: np.ndarray, stream: Any) -> None: ...
    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None: ...
    def event_create(self) -> Any: ...
    def event_record(self, event: Any, stream: Any) -> None: ...
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...
    def event_destroy(self, event: Any) -> None: ...


def _host_view(ptr: int, nbytes: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


class CudaPythonDriver:
    """cuda-python (``cuda-bindings``) runtime API."""

    name = "cuda-python"

    def __init__(self) -> None:
        from cuda.bindings import runtime

        self._rt = runtime
        self._host: dict[int, int] = {}

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            _, text = self._rt.cudaGetErrorString(err)
            raise DeviceError(f"CUDA {what} failed: {getattr(err, 'name', err)} ({text.decode(errors='replace')})",
                              fix="check the GPU is visible (nvidia-smi / tegrastats) and has free memory")
        if isinstance(result, tuple):
            return result[1] if len(result) == 2 else result[1:]
        return None

    def device_count(self) -> int:
        return int(self._call("cudaGetDeviceCount", self._rt.cudaGetDeviceCount))

    @contextlib.contextmanager
    def activate(self, device: int) -> Iterator[None]:
        # The runtime binds a device's primary context to the calling thread here; cheap when already current.
        self._call("cudaSetDevice", self._rt.cudaSetDevice, device)
        yield

    def device_info(self, device: int) -> DeviceInfo:
        props = self._call("cudaGetDeviceProperties", self._rt.cudaGetDeviceProperties, device)
        runtime = int(self._call("cudaRuntimeGetVersion", self._rt.cudaRuntimeGetVersion))
        driver = int(self._call("cudaDriverGetVersion", self._rt.cudaDriverGetVersion))
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return DeviceInfo(name.split("\x00")[0].strip(), (int(props.major), int(props.minor)), int(props.totalGlobalMem),
                          _cuda_version(runtime), _cuda_version(driver))

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", self._rt.cudaMalloc, max(nbytes, 1)))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", self._rt.cudaFree, ptr)

    def malloc_host(self, nbytes: int) -> np.ndarray:
        ptr = int(self._call("cudaMallocHost", self._rt.cudaMallocHost, max(nbytes, 1)))
        array = _host_view(ptr, max(nbytes, 1))
        self._host[array.ctypes.data] = ptr
        return array

    def free_host(self, array: np.ndarray) -> None:
        self._call("cudaFreeHost", self._rt.cudaFreeHost, self._host.pop(array.ctypes.data))

    def stream_create(self) -> Any:
        return self._call("cudaStreamCreateWithFlags", self._rt.cudaStreamCreateWithFlags, self._rt.cudaStreamNonBlocking)

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", self._rt.cudaStreamSynchronize, stream)

    def stream_destroy(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", self._rt.cudaStreamDestroy, stream)

    def copy_htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", self._rt.cudaMemcpyAsync, dst, src.ctypes.data, src.nbytes, kind, stream)

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", self._rt.cudaMemcpyAsync, dst.ctypes.data, src, dst.nbytes, kind, stream)

    def event_create(self) -> Any:
        return self._call("cudaEventCreate", self._rt.cudaEventCreate)

    def event_record(self, event: Any, stream: Any) -> None:
        self._call("cudaEventRecord", self._rt.cudaEventRecord, event, stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        self._call("cudaEventSynchronize", self._rt.cudaEventSynchronize, end)
        return float(self._call("cudaEventElapsedTime", self._rt.cudaEventElapsedTime, start, end))

    def event_destroy(self, event: Any) -> None:
        self._call("cudaEventDestroy", self._rt.cudaEventDestroy, event)


class PyCudaDriver:
    """pycuda, with the device's primary context pushed around each use (never ``pycuda.autoinit``)."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self._cuda = cuda
        self._contexts: dict[int, Any] = {}
        self._allocations: dict[int, Any] = {}
        self._lock = threading.Lock()

    def device_count(self) -> int:
        return int(self._cuda.Device.count())

    @contextlib.contextmanager
    def activate(self, device: int) -> Iterator[None]:
        with self._lock:
            context = self._contexts.get(device)
            if context is None:
                context = self._contexts[device] = self._cuda.Device(device).retain_primary_context()
        context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def device_info(self, device: int) -> DeviceInfo:
        dev = self._cuda.Device(device)
        major, minor = dev.compute_capability()
        runtime = ".".join(str(v) for v in self._cuda.get_version()[:2])
        return DeviceInfo(dev.name(), (int(major), int(minor)), int(dev.total_memory()), runtime,
                          _cuda_version(int(self._cuda.get_driver_version())))

    def malloc(self, nbytes: int) -> int:
        allocation = self._cuda.mem_alloc(max(nbytes, 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, ptr: int) -> None:
        self._allocations.pop(ptr).free()

    def malloc_host(self, nbytes: int) -> np.ndarray:
        return self._cuda.pagelocked_empty(max(nbytes, 1), np.uint8)

    def free_host(self, array: np.ndarray) -> None:
        array.base.free()

    def stream_create(self) -> Any:
        return self._cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def stream_destroy(self, stream: Any) -> None:
        del stream  # pycuda frees a stream when its last reference goes

    def copy_htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self._cuda.memcpy_htod_async(dst, src, stream)

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self._cuda.memcpy_dtoh_async(dst, src, stream)

    def event_create(self) -> Any:
        return self._cuda.Event()

    def event_record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(start.time_till(end))

    def event_destroy(self, event: Any) -> None:
        del event


def _cuda_version(number: int) -> str:
    """CUDA's integer version (12060) as text (12.6)."""
    return f"{number // 1000}.{(number % 1000) // 10}"


#: Drivers in the order they are tried; each entry is (importable module, factory).
DRIVERS: dict[str, tuple[str, Callable[[], Driver]]] = {
    "cuda-python": ("cuda.bindings", CudaPythonDriver),
    "pycuda": ("pycuda", PyCudaDriver),
}
_cached: dict[str, Driver] = {}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def get_driver() -> Driver:
    """The CUDA driver to use: ``$EDGEDL_CUDA_DRIVER`` if set, else the first installed of :data:`DRIVERS`."""
    wanted = os.environ.get("EDGEDL_CUDA_DRIVER")
    names = [wanted] if wanted else list(DRIVERS)
    for name in names:
        if name not in DRIVERS:
            raise MissingDependencyError(f"EDGEDL_CUDA_DRIVER={name!r} is not one of {', '.join(DRIVERS)}",
                                         fix="unset it or name an installed driver")
        module, factory = DRIVERS[name]
        if name in _cached:
            return _cached[name]
        if _installed(module):
            _cached[name] = factory()
            return _cached[name]
    raise MissingDependencyError("no CUDA Python bindings are installed", fix=INSTALL_HINT)


def device_count_or_reason() -> tuple[int, str | None]:
    """(number of usable CUDA devices, None) or (0, why none can be used)."""
    try:
        count = get_driver().device_count()
    except MissingDependencyError as exc:
        return 0, f"{exc.problem} ({exc.fix})"
    except DeviceError as exc:
        return 0, f"no usable CUDA device: {exc.problem}"
    return (count, None) if count > 0 else (0, "no CUDA device found")


class DeviceArray:
    """A view of device memory with ``__cuda_array_interface__`` (CuPy, PyTorch and Numba can wrap it)."""

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.ptr, self.shape, self.dtype = ptr, tuple(shape), np.dtype(dtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3,
                "strides": None, "stream": None}

    def __repr__(self) -> str:
        return f"DeviceArray(0x{self.ptr:x}, shape={self.shape}, dtype={self.dtype})"


class CudaSession:
    """A model's CUDA resources on one device: a stream, two timing events, and every buffer it allocated."""

    def __init__(self, device: int = 0, driver: Driver | None = None) -> None:
        self.driver = driver or get_driver()
        self.device = device
        count = self.driver.device_count()
        if device >= count:
            raise DeviceError(f"CUDA device {device} does not exist ({count} found)", fix="pass device=0")
        self._device_buffers: list[int] = []
        self._host_buffers: list[np.ndarray] = []
        with self.active():
            self.info = self.driver.device_info(device)
            self.stream = self.driver.stream_create()
            self.stream_handle = self.driver.stream_handle(self.stream)
            self._start, self._end = self.driver.event_create(), self.driver.event_create()
        self.closed = False

    def active(self) -> contextlib.AbstractContextManager[None]:
        """Make this device current in the calling thread for the duration of a ``with`` block."""
        return self.driver.activate(self.device)

    def device_buffer(self, nbytes: int) -> int:
        """Device memory owned by this session (freed by :meth:`close`)."""
        ptr = self.driver.malloc(nbytes)
        self._device_buffers.append(ptr)
        return ptr

    def pinned_buffer(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory (a uint8 array) owned by this session; async copies need it."""
        array = self.driver.malloc_host(nbytes)
        self._host_buffers.append(array)
        return array

    def upload(self, dst: int, src: np.ndarray) -> None:
        """Queue a host-to-device copy on the stream (``src`` should be pinned for it to be truly async)."""
        self.driver.copy_htod(dst, src, self.stream)

    def download(self, dst: np.ndarray, src: int) -> None:
        """Queue a device-to-host copy on the stream."""
        self.driver.copy_dtoh(dst, src, self.stream)

    def mark_start(self) -> None:
        """Record the start event on the stream."""
        self.driver.event_record(self._start, self.stream)

    def mark_end(self) -> None:
        """Record the end event on the stream."""
        self.driver.event_record(self._end, self.stream)

    def synchronize(self) -> None:
        """Wait for everything queued on the stream."""
        self.driver.stream_synchronize(self.stream)

    def elapsed_ms(self) -> float:
        """GPU time between the last start and end marks."""
        return self.driver.event_elapsed_ms(self._start, self._end)

    def close(self) -> None:
        """Free every buffer, the events and the stream, now. Safe to call twice."""
        if getattr(self, "closed", True):
            return
        self.closed = True
        with self.active():
            self.driver.stream_synchronize(self.stream)
            for ptr in self._device_buffers:
                self.driver.free(ptr)
            for array in self._host_buffers:
                self.driver.free_host(array)
            self._device_buffers.clear()
            self._host_buffers.clear()
            self.driver.event_destroy(self._start)
            self.driver.event_destroy(self._end)
            self.driver.stream_destroy(self.stream)
