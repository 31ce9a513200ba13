"""GPU preprocessing: a camera frame becomes a model input on the GPU, in one kernel, as the spec says.

    pre = GpuPreprocessor(model_spec, device=0)
    tensor, geometry = pre.run(frame)            # uint8 BGR H x W x 3 numpy frame in
    outputs = model({"images": tensor})          # a GPU backend reads the tensor where it is

The frame is copied into pinned host memory and uploaded as uint8 (a quarter of the bytes of
float32) with an async copy on the preprocessor's own stream; the kernel of
:mod:`edgedl.runtimes.cuda.kernel` then resizes, reorders colours, normalizes and lays the
result out in one pass. Its output equals :func:`edgedl.preprocess.preprocess` (see that module), and
the geometry returned is the CPU path's, so boxes map back to frame pixels the same way.

The kernel is compiled at run time with NVRTC (through cuda-python) for the device's architecture,
once per process, and loaded through the CUDA driver API. Buffers are allocated on the first frame,
grow only when a larger frame arrives, and are otherwise reused: a frame allocates nothing.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgedl.errors import DeviceError, MissingDependencyError, UsageError
from edgedl.preprocess import Geometry, PreprocessSpec, check_frame, resize_frame
from edgedl.runtimes.cuda.kernel import (
    KERNEL_NAMES,
    KERNEL_SOURCE,
    PARAMS_DTYPE,
    LaunchPlan,
    compile_options,
    kernel_name,
    nvrtc_target,
    plan_launch,
)
from edgedl.runtimes.cuda.memory import CudaPythonDriver, CudaSession, DeviceArray, DeviceInfo, Driver, get_driver

CPU_FALLBACK = "preprocess on the CPU (device_preprocess='cpu')"


class Kernels(Protocol):
    """Launches the preprocessing kernels on a stream (NVRTC-compiled on a GPU; anything equivalent elsewhere)."""

    def launch(self, name: str, plan: LaunchPlan, params: np.ndarray, stream_handle: int) -> None: ...


@dataclass(frozen=True)
class CompiledKernels:
    """The preprocessing module as NVRTC built it for one GPU architecture."""

    architecture: str  # sm_87 (a cubin) or compute_86 (PTX the driver compiles for a newer GPU)
    image: bytes  # what cuModuleLoadData takes: the cubin, or NUL-terminated PTX
    ptx: str
    nvrtc_version: str


_compiled: dict[tuple[int, int], CompiledKernels] = {}
_loaded: dict[int, NvrtcKernels] = {}
_cache_lock = threading.RLock()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _nvrtc_install_hint() -> str:
    from cuda import bindings

    major = int(bindings.__version__.split(".")[0])
    wheel = "nvidia-cuda-nvrtc" if major >= 13 else f"nvidia-cuda-nvrtc-cu{major}"  # CUDA 13 dropped the -cuXX suffix
    return f"pip install '{wheel}=={major}.*' to match cuda-python {bindings.__version__} (JetPack ships it), or {CPU_FALLBACK}"


def _nvrtc() -> Any:
    """cuda-python's NVRTC module, with its library loaded."""
    if not _importable("cuda.bindings"):
        raise MissingDependencyError("GPU preprocessing compiles its kernel with NVRTC, which needs cuda-python",
                                     fix=f"pip install 'edgedl[tensorrt]' (cuda-python), or {CPU_FALLBACK}")
    from cuda.bindings import nvrtc

    try:
        nvrtc.nvrtcVersion()
    except RuntimeError as exc:  # cuda.pathfinder's DynamicLibNotFoundError (older bindings: a dlopen RuntimeError)
        raise MissingDependencyError("the NVRTC library (libnvrtc) that compiles the GPU preprocessing kernel was not found",
                                     fix=_nvrtc_install_hint()) from exc
    return nvrtc


def _nvrtc_call(nvrtc: Any, what: str, result: Any, program: Any = None) -> Any:
    err = result[0] if isinstance(result, tuple) else result
    if err == nvrtc.nvrtcResult.NVRTC_SUCCESS:
        if not isinstance(result, tuple) or len(result) == 1:
            return None
        return result[1] if len(result) == 2 else result[1:]
    detail = getattr(err, "name", str(err))
    if program is not None:
        log = _nvrtc_read(nvrtc, program, nvrtc.nvrtcGetProgramLogSize, nvrtc.nvrtcGetProgramLog).decode(errors="replace")
        detail += ": " + next((line.strip() for line in log.splitlines() if "error" in line), log.strip()[:200])
    raise DeviceError(f"NVRTC {what} failed for the preprocessing kernel: {detail}",
                      fix=f"install the NVRTC of the device's CUDA version, or {CPU_FALLBACK}")


def _nvrtc_read(nvrtc: Any, program: Any, size_fn: Any, read_fn: Any) -> bytes:
    size = _nvrtc_call(nvrtc, size_fn.__name__, size_fn(program))
    buffer = bytearray(size)
    _nvrtc_call(nvrtc, read_fn.__name__, read_fn(program, buffer))
    return bytes(buffer)


def compile_kernels(capability: tuple[int, int]) -> CompiledKernels:
    """Every preprocessing kernel compiled for a GPU of compute ``capability``; cached per process. Needs no GPU."""
    with _cache_lock:
        if capability in _compiled:
            return _compiled[capability]
        nvrtc = _nvrtc()
        version = "{}.{}".format(*_nvrtc_call(nvrtc, "nvrtcVersion", nvrtc.nvrtcVersion()))
        supported = list(_nvrtc_call(nvrtc, "nvrtcGetSupportedArchs", nvrtc.nvrtcGetSupportedArchs()))
        architecture, cubin = nvrtc_target(capability, supported, version)
        options = compile_options(architecture)
        program = _nvrtc_call(nvrtc, "nvrtcCreateProgram",
                              nvrtc.nvrtcCreateProgram(KERNEL_SOURCE.encode(), b"edgedl_preprocess.cu", 0, [], []))
        try:
            _nvrtc_call(nvrtc, "compilation", nvrtc.nvrtcCompileProgram(program, len(options), options), program)
            ptx = _nvrtc_read(nvrtc, program, nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX)
            image = _nvrtc_read(nvrtc, program, nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN) if cubin else ptx
        finally:
            nvrtc.nvrtcDestroyProgram(program)
        compiled = _compiled[capability] = CompiledKernels(architecture, image, ptx.rstrip(b"\0").decode(), version)
        return compiled


class NvrtcKernels:
    """The compiled module loaded into a device's primary context (the one the runtime API uses)."""

    def __init__(self, compiled: CompiledKernels, info: DeviceInfo) -> None:
        from cuda.bindings import driver as cu

        self._cu = cu
        self._call("cuInit", cu.cuInit(0))
        err, module = cu.cuModuleLoadData(compiled.image)
        if err != cu.CUresult.CUDA_SUCCESS:
            raise DeviceError(f"the CUDA driver ({info.cuda_driver}) cannot load the preprocessing kernel that NVRTC "
                              f"{compiled.nvrtc_version} built for {compiled.architecture}: {err.name}",
                              fix=f"install an NVRTC no newer than the driver's CUDA {info.cuda_driver}, or {CPU_FALLBACK}")
        self._module = module
        self._functions = {name: self._call("cuModuleGetFunction", cu.cuModuleGetFunction(module, name.encode()))
                           for name in KERNEL_NAMES}

    def _call(self, what: str, result: Any) -> Any:
        err = result[0] if isinstance(result, tuple) else result
        if err != self._cu.CUresult.CUDA_SUCCESS:
            raise DeviceError(f"CUDA {what} failed for the preprocessing kernel: {getattr(err, 'name', err)}",
                              fix="check the GPU is visible (nvidia-smi / tegrastats) and has free memory")
        return result[1] if isinstance(result, tuple) and len(result) > 1 else None

    def launch(self, name: str, plan: LaunchPlan, params: np.ndarray, stream_handle: int) -> None:
        """Queue one kernel on the stream; ``params`` is the one :data:`PARAMS_DTYPE` argument (copied at launch)."""
        pointers = np.array([params.ctypes.data], dtype=np.uint64)  # kernelParams: an array of argument addresses
        self._call("cuLaunchKernel", self._cu.cuLaunchKernel(
            self._functions[name], plan.grid[0], plan.grid[1], 1, plan.block[0], plan.block[1], 1, 0,
            self._cu.CUstream(stream_handle), pointers.ctypes.data, 0))


def _kernels_for(device: int, info: DeviceInfo) -> NvrtcKernels:
    """The kernels for ``device``, compiled and loaded on first use (the caller has made the device current)."""
    with _cache_lock:
        if device not in _loaded:
            _loaded[device] = NvrtcKernels(compile_kernels(info.compute_capability), info)
        return _loaded[device]


def _cuda_python_driver() -> Driver:
    if not _importable("cuda.bindings"):
        also = " (pycuda is installed, but the kernel is compiled and launched through cuda-python)" \
            if _importable("pycuda") else ""
        raise MissingDependencyError(f"GPU preprocessing needs cuda-python{also}",
                                     fix=f"pip install 'edgedl[tensorrt]' (cuda-python), or {CPU_FALLBACK}")
    driver = get_driver()
    return driver if driver.name == CudaPythonDriver.name else CudaPythonDriver()


class DeviceTensor(DeviceArray):
    """A preprocessed frame on the GPU: ``__cuda_array_interface__`` (naming the stream that wrote it) and ``to_host()``.

    When it lives in the preprocessor's own buffer (no ``out=``) it is valid until the next ``run()`` or ``close()``.
    """

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype, stream_handle: int,
                 owner: GpuPreprocessor) -> None:
        super().__init__(ptr, shape, dtype)
        self.stream_handle = stream_handle
        self._owner = owner

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        # Consumers that honour version 3's stream wait for it; edgedl's backends rely on run(wait=True) instead.
        return {**super().__cuda_array_interface__, "stream": self.stream_handle}

    def to_host(self) -> np.ndarray:
        """A numpy copy (waits for the preprocessing to finish)."""
        return self._owner.download(self)


class GpuPreprocessor:
    """Runs one :class:`PreprocessSpec` on a CUDA device: ``run(frame) -> (DeviceTensor, Geometry)``.

    ``device``: the CUDA device (that of the model it feeds). ``driver`` and ``kernels`` replace the
    cuda-python memory layer and the NVRTC kernels (tests run the same flow over host memory).
    ``interpolation="area"`` resizes on the CPU with OpenCV and does the rest on the GPU.
    One ``run`` at a time: calls from several threads are serialized.
    """

    def __init__(self, spec: PreprocessSpec, device: int = 0, *, driver: Driver | None = None,
                 kernels: Kernels | None = None) -> None:
        self.spec = spec
        self.closed = True  # until every resource below exists, close() has nothing to free
        driver = driver or _cuda_python_driver()
        try:
            count = driver.device_count()
        except DeviceError as exc:
            raise DeviceError(f"GPU preprocessing needs a usable CUDA device: {exc.problem}",
                              fix=f"{exc.fix}, or {CPU_FALLBACK}" if exc.fix else CPU_FALLBACK) from exc
        if count == 0:
            raise DeviceError("GPU preprocessing needs a CUDA device and none was found", fix=CPU_FALLBACK)
        self._session = CudaSession(device, driver)
        self._driver = driver
        self.info: DeviceInfo = self._session.info
        self.stream_handle: int = self._session.stream_handle  # the stream every run() is queued on
        try:
            with self._session.active():
                self._kernels = kernels or _kernels_for(device, self._session.info)
        except BaseException:
            self._session.close()
            raise
        self.dtype = np.dtype(spec.dtype)
        self.shape = (1, 3, spec.height, spec.width) if spec.layout == "NCHW" else (1, spec.height, spec.width, 3)
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._kernel = kernel_name(spec.layout, spec.dtype)
        self._params = np.zeros((), dtype=PARAMS_DTYPE)
        a, b = spec.normalization()
        self._params["a"], self._params["b"] = a, b
        self._params["width"], self._params["height"] = spec.width, spec.height
        self._params["swap_rb"] = int(spec.color == "RGB")
        self._params["pad_value"] = spec.pad_value
        self._plan: LaunchPlan | None = None  # the plan whose taps are on the device
        self._device: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)
        self._pinned: dict[str, np.ndarray] = {}
        self._timed = False
        self._lock = threading.Lock()
        self.closed = False

    # ------------------------------------------------------------------ buffers (the stream is idle when these run)
    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._device.get(name, (0, 0))
        if size < nbytes:
            if name in self._device:
                self._driver.free(self._device.pop(name)[0])
            ptr = self._driver.malloc(nbytes)
            self._device[name] = (ptr, nbytes)
        return ptr

    def _pinned_buffer(self, name: str, nbytes: int) -> np.ndarray:
        array = self._pinned.get(name)
        if array is None or array.nbytes < nbytes:
            if array is not None:
                self._driver.free_host(self._pinned.pop(name))
            array = self._pinned[name] = self._driver.malloc_host(nbytes)
        return array[:nbytes]

    def _upload(self, name: str, data: np.ndarray) -> int:
        """Stage ``data`` in pinned memory and queue its copy into the device buffer ``name``; returns the pointer."""
        staged = self._pinned_buffer(name, data.nbytes)
        np.copyto(staged.view(data.dtype).reshape(data.shape), data)
        ptr = self._device_buffer(name, data.nbytes)
        self._session.upload(ptr, staged)
        return ptr

    # ------------------------------------------------------------------ the public calls
    def run(self, frame: np.ndarray, out: int | None = None, *, wait: bool = True) -> tuple[DeviceTensor, Geometry]:
        """Preprocess one BGR uint8 frame; returns the model input on the GPU and the frame's geometry.

        ``out``: a device pointer to write into (e.g. an engine's input buffer, at least :attr:`nbytes`),
        else the preprocessor's own buffer. ``wait=False`` returns once the work is queued on the
        preprocessor's stream (named in the tensor's ``__cuda_array_interface__``); call
        :meth:`synchronize` before handing it to a consumer that does not wait on that stream.
        """
        if self.closed:
            raise UsageError("this GpuPreprocessor was closed", fix="create a new one")
        if out is not None:
            if isinstance(out, bool) or not isinstance(out, (int, np.integer)) or out <= 0:
                raise UsageError(f"out must be a CUDA device pointer (a positive int), got {out!r}",
                                 fix="pass int(tensor.__cuda_array_interface__['data'][0]) of a device buffer, or leave it out")
            out = int(out)
        frame = check_frame(frame)  # empty frames are refused there too
        with self._lock, self._session.active():
            plan = self._plan
            if plan is None or (plan.geometry.original_width, plan.geometry.original_height) != frame.shape[1::-1]:
                plan = plan_launch(self.spec, frame.shape[1], frame.shape[0])
            image = resize_frame(self.spec, frame)[0] if plan.cpu_resize else frame
            self._session.synchronize()  # after run(wait=False), the last copies may still be reading the pinned buffers
            self._session.mark_start()
            if plan is not self._plan:  # new frame size: new taps (the only time they are uploaded)
                taps = self._upload("taps", plan.taps)
                self._params["columns"], self._params["rows"] = taps, taps + plan.columns.nbytes
                self._plan = plan
            self._params["src"] = self._upload("frame", image)
            self._params["src_pitch"] = plan.source_width * 3
            dst = out if out is not None else self._device_buffer("output", self.nbytes)
            self._params["dst"] = dst
            self._kernels.launch(self._kernel, plan, self._params, self.stream_handle)
            self._session.mark_end()
            self._timed = True
            if wait:
                self._session.synchronize()
        return DeviceTensor(dst, self.shape, self.dtype, self.stream_handle, self), plan.geometry

    def run_batch(self, frames: Sequence[np.ndarray], batch: int) -> tuple[DeviceTensor, list[Geometry]]:
        """Several frames as one model input of ``batch`` rows on the GPU, frame ``i`` in row ``i``.

        Rows past the frames keep what they last held (a fixed-batch engine computes them; the caller
        drops their outputs). The tensor lives in the preprocessor's batch buffer, valid until the next
        ``run_batch`` or ``close()``; it is complete when this returns.
        """
        if not 1 <= len(frames) <= batch:
            raise UsageError(f"run_batch takes 1 to {batch} frames, got {len(frames)}", fix="pass at most batch frames")
        if self.closed:
            raise UsageError("this GpuPreprocessor was closed", fix="create a new one")
        with self._lock, self._session.active():
            self._session.synchronize()  # the batch buffer may be reallocated: nothing may still be writing it
            base = self._device_buffer("batch", batch * self.nbytes)
        geometries = []
        for i, frame in enumerate(frames):
            _, geometry = self.run(frame, out=base + i * self.nbytes, wait=i == len(frames) - 1)
            geometries.append(geometry)
        return DeviceTensor(base, (batch, *self.shape[1:]), self.dtype, self.stream_handle, self), geometries

    @property
    def last_device_ms(self) -> float | None:
        """GPU time of the last ``run`` (upload and kernel), from CUDA events; None before the first."""
        if not self._timed or self.closed:
            return None
        with self._lock, self._session.active():
            return self._session.elapsed_ms()

    def download(self, tensor: DeviceArray) -> np.ndarray:
        """A numpy copy of a device tensor, after the work queued on this preprocessor's stream."""
        if self.closed:
            raise UsageError("this GpuPreprocessor was closed, so its tensors are gone", fix="call to_host() before close()")
        host = np.empty(tensor.shape, dtype=tensor.dtype)
        with self._lock, self._session.active():
            self._session.download(host.reshape(-1).view(np.uint8), tensor.ptr)
            self._session.synchronize()
        return host

    def synchronize(self) -> None:
        """Wait for everything this preprocessor queued."""
        with self._lock:
            if not self.closed:
                with self._session.active():
                    self._session.synchronize()

    def close(self) -> None:
        """Free every buffer and the stream now. Safe to call twice. The compiled kernels stay loaded for the process."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            with self._session.active():
                self._session.synchronize()
                for ptr, _ in self._device.values():
                    self._driver.free(ptr)
                for array in self._pinned.values():
                    self._driver.free_host(array)
                self._device.clear()
                self._pinned.clear()
            self._session.close()

    def __enter__(self) -> GpuPreprocessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        spec, state = self.spec, "closed" if self.closed else f"device {self._session.device}"
        return f"GpuPreprocessor({spec.width}x{spec.height} {spec.resize} {spec.layout} {spec.dtype}, {state})"
