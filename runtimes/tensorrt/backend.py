"""TensorRT (``pip install edgedl[tensorrt]``; the ``tensorrt`` module itself comes with JetPack).

The engine is built on the device from the bundle (see ``build``) and cached
under a key naming everything it depends on (see ``engine_cache``). Inference uses
TensorRT's tensor-name API (``set_tensor_address`` / ``execute_async_v3``, 8.5 and
later) where the module has it and bindings (``execute_async_v2``) where it does not,
with every buffer allocated once at load (see ``edgedl.runtimes.cuda.memory``).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedl.errors import DeviceError, MissingDependencyError, UsageError
from edgedl.runtimes.base import BackendBase, Capabilities, LoadOptions, TensorSpec, device_array_interface
from edgedl.runtimes.cuda.memory import CudaSession, DeviceArray, device_count_or_reason
from edgedl.runtimes.source import ModelSource, user_cache_dir
from edgedl.runtimes.tensorrt.build import Recipe, TrtFeatures, TrtLog, build_plan, recipe
from edgedl.runtimes.tensorrt.engine_cache import EngineCache, engine_key, get_or_build, writable
from edgedl.runtimes.tensorrt.profiler import PROFILER, tensorrt_layers

NAME = "tensorrt"
log = logging.getLogger("edgedl.runtimes")
INSTALL_HINT = ("on JetPack, TensorRT's Python module comes with the OS (sudo apt-get install python3-libnvinfer, "
                "or use an l4t-tensorrt container) and cuda-python installs with pip install 'edgedl[tensorrt]'; "
                "on an x86 GPU machine: pip install tensorrt 'edgedl[tensorrt]'")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return module in sys.modules


def probe() -> str | None:
    """Why TensorRT cannot run here, or None: the module, CUDA bindings and a GPU are all needed."""
    if not _installed("tensorrt"):
        return "the tensorrt module is not installed"
    count, reason = device_count_or_reason()
    return reason if count == 0 else None


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a MissingDependencyError saying how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(f"TensorRT is not installed ({exc})", fix=INSTALL_HINT) from None
    return tensorrt


def engine_folder(source: ModelSource) -> tuple[EngineCache, list[EngineCache]]:
    """(cache to write, caches to read): the bundle's ``engines/`` if writable, else the user cache."""
    primary = EngineCache(source.engine_dir)
    if writable(source.engine_dir):
        return primary, [primary]
    fallback = EngineCache(user_cache_dir() / f"{source.name}-{source.file('fp32').sha256[:12]}")
    log.info("%s is read-only; caching engines in %s", source.engine_dir, fallback.folder)
    return fallback, [primary, fallback]


@dataclass
class _Tensor:
    """One engine I/O tensor and the buffers allocated for its largest shape."""

    name: str
    is_input: bool
    dtype: np.dtype
    index: int
    max_shape: tuple[int, ...]
    device: int = 0
    host: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    bound: int = 0


def _dims(dims: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in dims)


class TensorRTBackend(BackendBase):
    """A deserialized engine, one execution context, one stream, buffers for the largest shapes."""

    name = NAME
    capabilities = Capabilities(device_io=True, layer_profiler=PROFILER)

    def __init__(self, trt: Any, engine: Any, runtime: Any, cuda: CudaSession, plan: Recipe, key_id: str,
                 plan_path: str, built: bool, trt_log: TrtLog, source: ModelSource) -> None:
        self._trt, self._engine, self._runtime, self._cuda, self._log = trt, engine, runtime, cuda, trt_log
        self.variant, self.precision = plan.variant, plan.precision
        self.key_id, self.plan_path, self.built, self.dla_core = key_id, plan_path, built, plan.dla_core
        self.last_device_ms: float | None = None
        self._profiling = False
        self._lock = threading.Lock()
        self._context = engine.create_execution_context()
        if self._context is None:
            raise DeviceError(f"TensorRT could not create an execution context: {trt_log.last_errors()}",
                              fix="free GPU memory (other models, processes) and retry")
        self._named = hasattr(engine, "num_io_tensors") and hasattr(self._context, "execute_async_v3")
        self._tensors = self._io_tensors()
        self._inputs = [t for t in self._tensors if t.is_input]
        self._outputs = [t for t in self._tensors if not t.is_input]
        self._allocate()
        symbolic = {i.name: i.shape for i in source.inputs}
        self.inputs = [TensorSpec(t.name, t.dtype, self._declared(t, symbolic.get(t.name))) for t in self._inputs]
        self.outputs = [TensorSpec(t.name, t.dtype, self._declared(t, None)) for t in self._outputs]
        self._bindings = [t.device for t in sorted(self._tensors, key=lambda t: t.index)]

    def _declared(self, tensor: _Tensor, symbolic: Any) -> tuple[int | str, ...]:
        shape = self._engine_shape(tensor)
        return tuple(d if d >= 0 else (symbolic[axis] if symbolic and not isinstance(symbolic[axis], int) else "?")
                     for axis, d in enumerate(shape))

    def _engine_shape(self, tensor: _Tensor) -> tuple[int, ...]:
        if self._named:
            return _dims(self._engine.get_tensor_shape(tensor.name))
        return _dims(self._engine.get_binding_shape(tensor.index))

    def _io_tensors(self) -> list[_Tensor]:
        trt, engine = self._trt, self._engine
        tensors = []
        if self._named:
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                tensors.append(_Tensor(name, is_input, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), i, ()))
        else:
            for i in range(engine.num_bindings):
                tensors.append(_Tensor(engine.get_binding_name(i), bool(engine.binding_is_input(i)),
                                       np.dtype(trt.nptype(engine.get_binding_dtype(i))), i, ()))
        return tensors

    def _set_input_shape(self, tensor: _Tensor, shape: tuple[int, ...]) -> bool:
        if self._named:
            return bool(self._context.set_input_shape(tensor.name, shape))
        return bool(self._context.set_binding_shape(tensor.index, shape))

    def _context_shape(self, tensor: _Tensor) -> tuple[int, ...]:
        if self._named:
            return _dims(self._context.get_tensor_shape(tensor.name))
        return _dims(self._context.get_binding_shape(tensor.index))

    def _allocate(self) -> None:
        """Set every input to its largest shape, read the outputs' largest shapes, allocate once for those."""
        for tensor in self._inputs:
            shape = self._engine_shape(tensor)
            if min(shape, default=0) < 0:
                if self._named:
                    shape = _dims(self._engine.get_tensor_profile_shape(tensor.name, 0)[2])
                else:
                    shape = _dims(self._engine.get_profile_shape(0, tensor.index)[2])
            tensor.max_shape = shape
            if not self._set_input_shape(tensor, shape):
                raise DeviceError(f"TensorRT refused shape {shape} for input {tensor.name!r}: {self._log.last_errors()}")
            tensor.shape = shape
        for tensor in self._outputs:
            tensor.max_shape = tensor.shape = self._context_shape(tensor)
            if min(tensor.max_shape, default=0) < 0:
                raise DeviceError(f"output {tensor.name!r} has a data-dependent shape {tensor.max_shape}, "
                                  "which edgedl's TensorRT backend does not support yet",
                                  fix="use backend='onnxruntime' for this model")
        for tensor in self._tensors:
            nbytes = int(np.prod(tensor.max_shape, dtype=np.int64)) * tensor.dtype.itemsize
            tensor.device = self._cuda.device_buffer(nbytes)
            tensor.host = self._cuda.pinned_buffer(nbytes)
            if self._named:
                self._context.set_tensor_address(tensor.name, tensor.device)
            tensor.bound = tensor.device

    def _stage_inputs(self, feeds: dict[str, Any]) -> bool:
        """Copy host inputs to the device (or point at device inputs); True when any input shape changed."""
        changed = False
        for tensor in self._inputs:
            value = feeds[tensor.name]
            interface = device_array_interface(value)
            shape = tuple(value.shape) if interface is None else tuple(interface["shape"])
            if shape != tensor.shape:
                if not self._set_input_shape(tensor, shape):
                    self._log.last_errors()
                    raise UsageError(f"input {tensor.name!r} shape {shape} is outside the engine's range "
                                     f"(largest {tensor.max_shape})",
                                     fix="load with shapes={...} covering it (edgedl build --shape) to rebuild")
                tensor.shape = shape
                changed = True
            if interface is None:
                assert tensor.host is not None
                staged = tensor.host[:value.nbytes]
                np.copyto(staged.view(tensor.dtype).reshape(shape), value, casting="no")
                self._cuda.upload(tensor.device, staged)
                pointer = tensor.device
            else:
                pointer = int(interface["data"][0])
            if pointer != tensor.bound:
                if self._named:
                    self._context.set_tensor_address(tensor.name, pointer)
                else:
                    self._bindings[tensor.index] = pointer
                tensor.bound = pointer
        return changed

    def _execute(self, feeds: dict[str, Any]) -> None:
        self._cuda.mark_start()
        if self._stage_inputs(feeds):
            for tensor in self._outputs:
                tensor.shape = self._context_shape(tensor)
        if self._named:
            ok = self._context.execute_async_v3(self._cuda.stream_handle)
        elif self._profiling:  # before 8.5, TensorRT reports layer times for synchronous execution only
            self._cuda.synchronize()
            ok = self._context.execute_v2(self._bindings)
        else:
            ok = self._context.execute_async_v2(self._bindings, self._cuda.stream_handle)
        if not ok:
            raise DeviceError(f"TensorRT inference failed: {self._log.last_errors()}")

    def infer(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run on host or device inputs; outputs come back as host arrays (copies the caller may keep)."""
        with self._lock, self._cuda.active():
            self._execute(feeds)
            for tensor in self._outputs:
                assert tensor.host is not None
                self._cuda.download(tensor.host[:self._nbytes(tensor)], tensor.device)
            self._cuda.mark_end()
            self._cuda.synchronize()
            self.last_device_ms = self._cuda.elapsed_ms()
            return {t.name: t.host[:self._nbytes(t)].view(t.dtype).reshape(t.shape).copy()  # type: ignore[union-attr]
                    for t in self._outputs}

    def infer_device(self, feeds: dict[str, Any]) -> dict[str, DeviceArray]:
        """Run and leave outputs on the GPU: views of this model's buffers, valid until its next call."""
        with self._lock, self._cuda.active():
            self._execute(feeds)
            self._cuda.mark_end()
            self._cuda.synchronize()
            self.last_device_ms = self._cuda.elapsed_ms()
            return {t.name: DeviceArray(t.device, t.shape, t.dtype) for t in self._outputs}

    def profile_layers(self, feeds: dict[str, Any], runs: int) -> Any:
        """Per-layer times from TensorRT's ``IProfiler`` over ``runs`` inferences of ``feeds``."""
        return tensorrt_layers(self._trt, lambda: self.infer(feeds), self._attach_profiler, runs)

    def _attach_profiler(self, profiler: Any) -> None:
        with self._lock:
            self._context.profiler = profiler
            self._profiling = profiler is not None

    @staticmethod
    def _nbytes(tensor: _Tensor) -> int:
        return int(np.prod(tensor.shape, dtype=np.int64)) * tensor.dtype.itemsize

    def describe(self) -> dict[str, Any]:
        """Engine key and file, GPU, TensorRT version, API path, DLA core."""
        info = self._cuda.info
        return {"engine": self.key_id, "plan": self.plan_path, "built_now": self.built, "tensorrt": self._trt.__version__,
                "gpu": f"{info.name} (sm {info.compute_capability[0]}.{info.compute_capability[1]})",
                "cuda": info.cuda_runtime, "cuda_driver": self._cuda.driver.name,
                "io_api": "tensor names (execute_async_v3)" if self._named else "bindings (execute_async_v2)",
                "dla_core": self.dla_core}

    def close(self) -> None:
        """Destroy the context and engine, then free every buffer and the stream."""
        with self._lock:
            if self._cuda.closed:
                return
            with self._cuda.active():
                self._context = self._engine = self._runtime = None
            self._cuda.close()


def _report(options: LoadOptions) -> Any:
    if callable(options.progress):
        return options.progress
    if options.progress is False:
        return lambda message: log.info("%s", message)

    def to_stderr(message: str) -> None:
        print(f"edgedl: tensorrt: {message}", file=sys.stderr, flush=True)

    return to_stderr


def open(source: ModelSource, precision: str, options: LoadOptions) -> TensorRTBackend:  # noqa: A001
    """Find or build the engine for this device and load it."""
    reason = probe()
    if reason:
        raise MissingDependencyError(f"the TensorRT backend cannot run here: {reason}", fix=INSTALL_HINT)
    trt = import_tensorrt()
    caps = TrtFeatures.of(trt)
    cuda = CudaSession(options.device)
    try:
        with cuda.active():
            trt_log = TrtLog(trt)
            fast_fp16 = True
            if caps.weak_typing:
                fast_fp16 = bool(getattr(trt.Builder(trt_log.logger), "platform_has_fast_fp16", True))
            plan = recipe(caps, source, precision, fast_fp16=fast_fp16, shapes=options.shapes, batch=options.batch,
                          workspace_mib=options.workspace_mib, dla_core=options.dla_core)
            cache_key = _key(source, plan, caps, cuda)
            write_cache, read_caches = engine_folder(source)
            runtime = trt.Runtime(trt_log.logger)
            if plan.dla_core is not None:
                runtime.DLA_core = plan.dla_core
            report = _report(options)
            info = cuda.info
            timing = write_cache.folder / (f"timing-{caps.version}-sm{info.compute_capability[0]}{info.compute_capability[1]}"
                                           ".cache")
            for cache in read_caches[:-1]:  # a read-only bundle's prebuilt engine, when there is one
                plan_bytes = None if options.rebuild else cache.load(cache_key)
                engine = runtime.deserialize_cuda_engine(plan_bytes) if plan_bytes else None
                if engine is not None:
                    return TensorRTBackend(trt, engine, runtime, cuda, plan, cache_key.id, str(cache.plan_path(cache_key)),
                                           False, trt_log, source)
            engine, built = get_or_build(
                write_cache, cache_key, lambda: build_plan(trt, caps, plan, source, timing, report),
                runtime.deserialize_cuda_engine, allow_build=options.build, rebuild=options.rebuild, on_wait=report)
            return TensorRTBackend(trt, engine, runtime, cuda, plan, cache_key.id, str(write_cache.plan_path(cache_key)),
                                   built, trt_log, source)
    except BaseException:
        cuda.close()
        raise


def _key(source: ModelSource, plan: Recipe, caps: TrtFeatures, cuda: CudaSession) -> Any:
    from edgedl.fsutil import sha256_file

    info = cuda.info
    calibration = sha256_file(source.calibration_cache) if plan.int8 == "calibration-cache" and source.calibration_cache \
        else None
    return engine_key(
        model_sha256=source.file(plan.variant).sha256, variant=plan.variant, precision=plan.precision, int8=plan.int8,
        calibration_cache_sha256=calibration, flags=list(plan.flags), strongly_typed=plan.strongly_typed,
        shapes=plan.profiles, workspace_mib=plan.workspace_mib, dla_core=plan.dla_core,
        tensorrt=caps.version, cuda=info.cuda_runtime, gpu=info.name,
        compute_capability=f"{info.compute_capability[0]}.{info.compute_capability[1]}")
