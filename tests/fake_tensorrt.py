"""A fake ``tensorrt`` module and a fake CUDA driver, for tests only.

TensorRT cannot be installed on the machines these tests run on, so this module
models the documented Python API closely enough to drive edgedl's TensorRT backend
end to end: ``Builder``, ``INetworkDefinition``, ``OnnxParser``, ``IBuilderConfig``
(flags, memory pools, profiles, calibrator, timing cache, DLA, progress monitor),
``IHostMemory``, ``Runtime.deserialize_cuda_engine`` and ``ICudaEngine`` /
``IExecutionContext`` with the tensor-name API (8.5+) and the binding API (up to 8.6).

What differs between releases is modelled by leaving API out, as the real modules do:

    8.4  bindings only; ONNX needs an EXPLICIT_BATCH network
    8.5, 8.6  tensor names and bindings
    10.x  tensor names only; EXPLICIT_BATCH ignored; max_workspace_size gone; IProgressMonitor
    11.x  no FP16/INT8 builder flags, no calibrators, no EXPLICIT_BATCH (strongly typed only)

Plans are real bytes: a header naming the TensorRT version and GPU they were built
for, then the ONNX graph. The runtime refuses a plan from another version or GPU, or
a truncated one, by logging an error and returning None, like TensorRT. Engines
"run" the graph with ONNX Runtime on the CPU, reading and writing the buffers at the
addresses set on the context, so the data path (shapes, addresses, copies) is real;
an FP16 engine rounds its outputs through float16 to stand in for FP16 math.

The fake CUDA driver gives "device" memory from host memory, bounds-checks every
copy, and counts allocations so tests can see that inference allocates nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import hashlib
import importlib.machinery
import json
import os
import struct
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx

MAGIC = b"FTRTPLAN"
VERSIONS = ("8.4.3", "8.5.2", "8.6.2", "10.3.0", "11.0.0")


class FakeGpu:
    """The device the fake driver and the fake TensorRT agree on."""

    def __init__(self, name: str = "Orin (fake)", cc: tuple[int, int] = (8, 7), dla_cores: int = 2) -> None:
        self.name, self.cc, self.dla_cores = name, cc, dla_cores


# --------------------------------------------------------------------------------------------- CUDA driver


class FakeStream:
    _next = 1

    def __init__(self) -> None:
        FakeStream._next += 1
        self.handle = 0x5000 + FakeStream._next


class FakeCudaDriver:
    """Implements edgedl.runtimes.cuda.memory.Driver over host memory, with bounds checks and counters."""

    name = "fake-cuda"

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.device: dict[int, np.ndarray] = {}
        self.host: dict[int, np.ndarray] = {}
        self.allocations = 0
        self.copies = 0
        self.activated_threads: set[int] = set()

    def device_count(self) -> int:
        return 1

    @contextlib.contextmanager
    def activate(self, device: int) -> Iterator[None]:
        assert device == 0
        self.activated_threads.add(threading.get_ident())
        yield

    def device_info(self, device: int) -> Any:
        from edgedl.runtimes.cuda.memory import DeviceInfo

        return DeviceInfo(self.gpu.name, self.gpu.cc, 8 << 30, "12.6", "12.6")

    def malloc(self, nbytes: int) -> int:
        block = np.zeros(max(nbytes, 1), np.uint8)
        self.device[block.ctypes.data] = block
        self.allocations += 1
        return block.ctypes.data

    def free(self, ptr: int) -> None:
        del self.device[ptr]  # KeyError on a double free or a foreign pointer

    def malloc_host(self, nbytes: int) -> np.ndarray:
        block = np.zeros(max(nbytes, 1), np.uint8)
        self.host[block.ctypes.data] = block
        self.allocations += 1
        return block

    def free_host(self, array: np.ndarray) -> None:
        del self.host[array.ctypes.data]

    def stream_create(self) -> FakeStream:
        return FakeStream()

    def stream_handle(self, stream: FakeStream) -> int:
        return stream.handle

    def stream_synchronize(self, stream: FakeStream) -> None:
        return None

    def stream_destroy(self, stream: FakeStream) -> None:
        return None

    def check_device_range(self, ptr: int, nbytes: int) -> None:
        for base, block in self.device.items():
            if base <= ptr and ptr + nbytes <= base + block.nbytes:
                return
        raise AssertionError(f"copy of {nbytes} bytes at 0x{ptr:x} is outside every device allocation")

    def copy_htod(self, dst: int, src: np.ndarray, stream: FakeStream) -> None:
        self.check_device_range(dst, src.nbytes)
        ctypes.memmove(dst, src.ctypes.data, src.nbytes)
        self.copies += 1

    def copy_dtoh(self, dst: np.ndarray, src: int, stream: FakeStream) -> None:
        self.check_device_range(src, dst.nbytes)
        ctypes.memmove(dst.ctypes.data, src, dst.nbytes)
        self.copies += 1

    def event_create(self) -> list[float]:
        return [0.0]

    def event_record(self, event: list[float], stream: FakeStream) -> None:
        event[0] = time.perf_counter()

    def event_elapsed_ms(self, start: list[float], end: list[float]) -> float:
        return (end[0] - start[0]) * 1e3

    def event_destroy(self, event: list[float]) -> None:
        return None

    def live(self) -> int:
        """Allocations not yet freed."""
        return len(self.device) + len(self.host)


# --------------------------------------------------------------------------------------------- TensorRT


class _Strict:
    """Like a pybind11 object: setting an attribute the class does not declare raises AttributeError."""

    _attrs: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in self._attrs:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


class IHostMemory(bytes):
    """Serialized data owned by TensorRT; supports the buffer protocol, like the real one."""

    @property
    def nbytes(self) -> int:
        return len(self)


class ParserError:
    def __init__(self, text: str) -> None:
        self._text = text

    def desc(self) -> str:
        return self._text

    def __str__(self) -> str:
        return self._text


def _toposort(graph: onnx.GraphProto) -> None:
    """Order nodes so each comes after the producers of its inputs (raises if there is a cycle)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise ValueError("the graph has a cycle or an input nothing produces")
        for node in runnable:
            ordered.append(node)
            ready.update(node.output)
            pending.remove(node)
    del graph.node[:]
    graph.node.extend(ordered)


def make_module(version: str = "10.3.0", gpu: FakeGpu | None = None) -> types.ModuleType:  # noqa: C901
    """A fresh fake ``tensorrt`` module of ``version`` (one of :data:`VERSIONS`)."""
    gpu = gpu or FakeGpu()
    major, minor = (int(p) for p in version.split(".")[:2])
    named_api = (major, minor) >= (8, 5)
    binding_api = major < 10
    weak = major < 11
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    mod._gpu = gpu
    mod._builds = []

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:  # overridden by applications
            pass

    ILogger.Severity = Severity

    class Logger(ILogger):
        def __init__(self, min_severity: Any = Severity.WARNING) -> None:
            self.min_severity = min_severity

    for member in Severity:
        setattr(Logger, member.name, member)

    flags = ["FP16", "INT8", "GPU_FALLBACK", "REFIT", "STRICT_TYPES"] if weak else ["GPU_FALLBACK", "REFIT"]
    BuilderFlag = enum.IntEnum("BuilderFlag", flags, start=0)
    creation = ["EXPLICIT_BATCH"] if major < 11 else []
    creation += ["STRONGLY_TYPED"] if major >= 10 else []
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation or ["PREFER_JIT_PYTHON_PLUGINS"],
                                                 start=0)
    DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "INT64"], start=0)
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    DeviceType = enum.IntEnum("DeviceType", ["GPU", "DLA"], start=0)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM",
                                                     "DLA_GLOBAL_DRAM"], start=0)
    to_np = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
             DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
    from_onnx = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
                 onnx.TensorProto.INT8: DataType.INT8, onnx.TensorProto.INT32: DataType.INT32,
                 onnx.TensorProto.BOOL: DataType.BOOL, onnx.TensorProto.UINT8: DataType.UINT8,
                 onnx.TensorProto.INT64: DataType.INT64}

    def nptype(dtype: Any) -> type:
        return to_np[dtype]

    def cache_version() -> str:
        parts = [int(p) for p in version.split(".")[:3]]
        return str(parts[0] * 10000 + parts[1] * 100 + parts[2] if parts[0] >= 10 else
                   parts[0] * 1000 + parts[1] * 100 + parts[2])

    class ITensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class INetworkDefinition(_Strict):
        def __init__(self, flags: int) -> None:
            self._inputs: list[ITensor] = []
            self._outputs: list[ITensor] = []
            self._onnx = b""
            self._layers = 0
            explicit = major >= 10 or (creation and flags & (1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH)))
            self._implicit_batch = not explicit

        has_implicit_batch_dimension = property(lambda self: self._implicit_batch)
        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))
        num_layers = property(lambda self: self._layers)

        def get_input(self, index: int) -> ITensor:
            return self._inputs[index]

        def get_output(self, index: int) -> ITensor:
            return self._outputs[index]

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
            self._network, self._logger, self._errors = network, logger, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

        def clear_errors(self) -> None:
            self._errors.clear()

        def _fail(self, text: str) -> bool:
            self._errors.append(ParserError(text))
            self._logger.log(Severity.ERROR, text)
            return False

        def parse(self, model: bytes, path: str | None = None) -> bool:
            if self._network._implicit_batch:
                return self._fail("Assertion failed: !mImporterCtx.network()->hasImplicitBatchDimension() && \"This "
                                  "version of the ONNX parser only supports TensorRT INetworkDefinitions with an "
                                  "explicit batch dimension.\"")
            try:
                proto = onnx.load_model_from_string(bytes(model))
                if path is not None:
                    from onnx.external_data_helper import load_external_data_for_model

                    load_external_data_for_model(proto, os.path.dirname(path))
                _toposort(proto.graph)  # the ONNX parser sorts nodes itself before importing them
                onnx.checker.check_model(proto)
            except Exception as exc:
                return self._fail(f"Failed to parse ONNX model: {type(exc).__name__}: {exc}")
            for node in proto.graph.node:
                if node.domain not in ("", "ai.onnx"):
                    return self._fail(f"No importer registered for op: {node.op_type}")
            weights = {i.name for i in proto.graph.initializer}

            def tensor(value: Any) -> ITensor:
                t = value.type.tensor_type
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
                if t.elem_type not in from_onnx:
                    raise ValueError(value.name)
                return ITensor(value.name, dims, from_onnx[t.elem_type])

            try:
                self._network._inputs = [tensor(v) for v in proto.graph.input if v.name not in weights]
                self._network._outputs = [tensor(v) for v in proto.graph.output]
            except ValueError as exc:
                return self._fail(f"Unsupported data type for tensor {exc}")
            self._network._onnx = proto.SerializeToString()
            self._network._layers = len(proto.graph.node)
            return True

        def parse_from_file(self, path: str) -> bool:
            with open(path, "rb") as fh:
                return self.parse(fh.read(), path)

    class IOptimizationProfile:
        def __init__(self) -> None:
            self._shapes: dict[str, list[tuple[int, ...]]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (TensorRT's names)
            self._shapes[input] = [tuple(min), tuple(opt), tuple(max)]

        def get_shape(self, input: str) -> list[tuple[int, ...]]:  # noqa: A002
            return self._shapes[input]

    class ITimingCache:
        def __init__(self, entries: dict[str, float]) -> None:
            self._entries = entries

        def serialize(self) -> IHostMemory:
            return IHostMemory(json.dumps({"trt": version, "entries": self._entries}).encode())

        def reset(self) -> bool:
            self._entries.clear()
            return True

    config_attrs = {"default_device_type", "DLA_core", "profiling_verbosity", "builder_optimization_level"}
    if weak:
        config_attrs |= {"int8_calibrator"}
    if major < 10:
        config_attrs |= {"max_workspace_size"}
    if major >= 10:
        config_attrs |= {"progress_monitor"}

    class IBuilderConfig(_Strict):
        _attrs = frozenset(config_attrs)

        def __init__(self) -> None:
            self._flags: set[Any] = set()
            self._pools: dict[Any, int] = {}
            self._profiles: list[IOptimizationProfile] = []
            self._timing: ITimingCache | None = None
            self._calibration_profile = None
            self.default_device_type = DeviceType.GPU
            self.DLA_core = -1
            if weak:
                self.int8_calibrator = None
            if major < 10:
                self.max_workspace_size = 0
            if major >= 10:
                self.progress_monitor = None

        def set_flag(self, flag: Any) -> None:
            self._flags.add(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self._flags

        def clear_flag(self, flag: Any) -> None:
            self._flags.discard(flag)

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            self._pools[pool] = int(size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(pool, 8 << 30)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self._profiles.append(profile)
            return len(self._profiles) - 1

        num_optimization_profiles = property(lambda self: len(self._profiles))

        def create_timing_cache(self, serialized: bytes) -> ITimingCache:
            entries: dict[str, float] = {}
            if serialized:
                try:
                    data = json.loads(bytes(serialized))
                    if data.get("trt") == version:
                        entries = dict(data["entries"])
                except (ValueError, KeyError):
                    pass
            return ITimingCache(entries)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            self._timing = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self._timing

    if weak:
        def set_calibration_profile(self: Any, profile: IOptimizationProfile) -> bool:
            self._calibration_profile = profile
            return True

        IBuilderConfig.set_calibration_profile = set_calibration_profile

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            self._logger = logger

        if major < 11:
            platform_has_fast_fp16 = property(lambda self: gpu.cc >= (5, 3))
            platform_has_fast_int8 = property(lambda self: gpu.cc >= (6, 1))
        num_DLA_cores = property(lambda self: gpu.dla_cores)

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def _error(self, text: str) -> None:
            self._logger.log(Severity.ERROR, text)

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
            monitor = getattr(config, "progress_monitor", None)
            if monitor is not None:
                monitor.phase_start("Building engine", None, 3)
            dynamic = [t for t in network._inputs if -1 in t.shape]
            profile = config._profiles[0]._shapes if config._profiles else {}
            if dynamic and not config._profiles:
                self._error("Network has dynamic or shape inputs, but no optimization profile has been defined.")
                return None
            for t in dynamic:
                if t.name not in profile:
                    self._error(f"Optimization profile is missing values for input {t.name}.")
                    return None
                for shape in profile[t.name]:
                    if len(shape) != len(t.shape) or any(d != -1 and d != s for d, s in zip(t.shape, shape, strict=True)):
                        self._error(f"Profile shape {shape} does not match input {t.name} dims {t.shape}.")
                        return None
            proto = onnx.load_model_from_string(network._onnx)
            ops = {n.op_type for n in proto.graph.node}
            has_qdq = "QuantizeLinear" in ops or "DequantizeLinear" in ops
            has_fp16 = any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
            flags = {f.name for f in config._flags}
            if weak and has_qdq and "INT8" not in flags:
                self._error("Network has Q/DQ layers, but the INT8 builder flag is not set.")
                return None
            precision = "fp32"
            if has_qdq:
                precision = "int8"
            elif weak and "INT8" in flags:
                if not self._calibrate(config, network):
                    return None
                precision = "int8-calibrated"
            elif (weak and "FP16" in flags) or (not weak and has_fp16):
                precision = "fp16"
            dla = config.default_device_type == DeviceType.DLA
            if dla:
                if not 0 <= config.DLA_core < gpu.dla_cores:
                    self._error(f"DLA core {config.DLA_core} does not exist (this device has {gpu.dla_cores}).")
                    return None
                if precision == "fp32" and "GPU_FALLBACK" not in flags:
                    self._error("DLA supports FP16 and INT8 only, and GPU fallback is not enabled.")
                    return None
            seconds = float(os.environ.get("FAKE_TRT_BUILD_SECONDS", "0"))
            for step in range(3):
                time.sleep(seconds / 3)
                if monitor is not None and not monitor.step_complete("Building engine", step):
                    self._error("Build cancelled by the progress monitor.")
                    return None
            if monitor is not None:
                monitor.phase_finish("Building engine")
            if config._timing is not None:
                config._timing._entries[hashlib.sha256(network._onnx).hexdigest()[:16]] = 1.0
            log = os.environ.get("FAKE_TRT_BUILD_LOG")
            if log:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(f"{os.getpid()} {version} {precision}\n")
            mod._builds.append(precision)
            header = {"trt": version, "gpu": gpu.name, "cc": list(gpu.cc), "dla_core": config.DLA_core if dla else None,
                      "precision": precision, "onnx_bytes": len(network._onnx),
                      "inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network._inputs],
                      "outputs": [[t.name, list(t.shape), int(t.dtype)] for t in network._outputs],
                      "profile": {k: [list(s) for s in v] for k, v in profile.items()}}
            text = json.dumps(header).encode()
            return IHostMemory(MAGIC + struct.pack("<I", len(text)) + text + network._onnx)

        def _calibrate(self, config: IBuilderConfig, network: INetworkDefinition) -> bool:
            calibrator = config.int8_calibrator
            if calibrator is None:
                self._logger.log(Severity.WARNING, "Calibrator is not being used. Users must provide dynamic range "
                                                   "for all tensors that are not Int32 or Bool.")
                return True
            cache = calibrator.read_calibration_cache()
            expected = f"TRT-{cache_version()}-{calibrator._algorithm}"
            if cache:
                header = bytes(cache).split(b"\n", 1)[0].decode(errors="replace")
                if header == expected:
                    return True
                self._logger.log(Severity.WARNING, f"Calibration cache header {header!r} does not match {expected!r}; "
                                                   "ignoring the cache.")
            names = [t.name for t in network._inputs]
            if calibrator.get_batch(names) is None:
                self._error("Calibration failure occurred with no scaling factors detected. This could be due to no "
                            "int8 calibrator or insufficient custom scales for network layers.")
                return False
            return True

    class _Calibrator:
        _algorithm = ""

        def __init__(self) -> None:
            pass

    calibrators = {}
    for cls_name, algorithm in (("IInt8EntropyCalibrator2", "EntropyCalibration2"),
                                ("IInt8EntropyCalibrator", "EntropyCalibration"),
                                ("IInt8MinMaxCalibrator", "MinMaxCalibration"),
                                ("IInt8LegacyCalibrator", "LegacyCalibration")):
        calibrators[cls_name] = type(cls_name, (_Calibrator,), {"_algorithm": algorithm})

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    def parse_plan(data: bytes, logger: ILogger, dla_core: int) -> dict[str, Any] | None:
        def refuse(text: str) -> None:
            logger.log(Severity.ERROR, text)

        data = bytes(data)
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            return refuse("1: [stdArchiveReader.cpp::StdArchiveReader::32] Error Code 1: Serialization (Serialization "
                          "assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
        (size,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
        start = len(MAGIC) + 4
        try:
            header = json.loads(data[start:start + size])
        except ValueError:
            return refuse("1: Serialization assertion failed: the plan is truncated or corrupt")
        if header["trt"] != version:
            return refuse(f"1: [stdArchiveReader.cpp] Error Code 1: Serialization (Serialization assertion "
                          f"stdVersionRead == kSERIALIZATION_VERSION failed.Version tag does not match. The engine plan "
                          f"file is not compatible with this version of TensorRT, expecting library version {version} "
                          f"got {header['trt']}, please rebuild.)")
        if tuple(header["cc"]) != gpu.cc:
            return refuse(f"6: The engine plan file is generated on an incompatible device, expecting compute "
                          f"{gpu.cc[0]}.{gpu.cc[1]} got compute {header['cc'][0]}.{header['cc'][1]}, please rebuild.")
        if header["dla_core"] is not None and header["dla_core"] != dla_core:
            return refuse(f"The engine was built for DLA core {header['dla_core']} but the runtime uses {dla_core}.")
        model = data[start + size:]
        if len(model) != header["onnx_bytes"]:
            return refuse("1: Serialization assertion failed: the plan is truncated (expected "
                          f"{header['onnx_bytes']} model bytes, found {len(model)})")
        header["onnx"] = model
        return header

    class Runtime(_Strict):
        _attrs = frozenset({"DLA_core", "max_threads"})

        def __init__(self, logger: ILogger) -> None:
            self._logger = logger
            self.DLA_core = -1

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
            plan = parse_plan(serialized_engine, self._logger, self.DLA_core)
            return None if plan is None else ICudaEngine(plan, self._logger)

    class ICudaEngine:
        def __init__(self, plan: dict[str, Any], logger: ILogger) -> None:
            self._plan, self._logger = plan, logger
            self._io = [(name, True, tuple(shape), DataType(dtype)) for name, shape, dtype in plan["inputs"]]
            self._io += [(name, False, tuple(shape), DataType(dtype)) for name, shape, dtype in plan["outputs"]]
            self._session = None

        num_optimization_profiles = property(lambda self: 1)

        def serialize(self) -> IHostMemory:
            text = json.dumps({k: v for k, v in self._plan.items() if k != "onnx"}).encode()
            return IHostMemory(MAGIC + struct.pack("<I", len(text)) + text + self._plan["onnx"])

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

        def _index(self, name: str) -> int:
            return next(i for i, io in enumerate(self._io) if io[0] == name)

        def _layer_names(self) -> list[str]:
            """TensorRT names layers after the network's nodes; here, one layer per ONNX node."""
            return [node.name or node.op_type for node in onnx.load_from_string(self._plan["onnx"]).graph.node]

        def _profile(self, name: str) -> list[tuple[int, ...]]:
            return [tuple(s) for s in self._plan["profile"][name]]

        def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                # Q/DQ as written, as TensorRT computes it, not fused into ONNX Runtime's own int8 kernels
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
                self._session = ort.InferenceSession(self._plan["onnx"], options, providers=["CPUExecutionProvider"])
            outputs = self._session.run(None, feeds)
            if self._plan["precision"] in ("fp16", "int8-calibrated"):
                outputs = [o.astype(np.float16).astype(o.dtype) if o.dtype == np.float32 else o for o in outputs]
            return outputs

    if named_api:
        def num_io_tensors(self: Any) -> int:
            return len(self._io)

        def get_tensor_name(self: Any, index: int) -> str:
            return self._io[index][0]

        def get_tensor_mode(self: Any, name: str) -> Any:
            return TensorIOMode.INPUT if self._io[self._index(name)][1] else TensorIOMode.OUTPUT

        def get_tensor_shape(self: Any, name: str) -> tuple[int, ...]:
            return self._io[self._index(name)][2]

        def get_tensor_dtype(self: Any, name: str) -> Any:
            return self._io[self._index(name)][3]

        def get_tensor_profile_shape(self: Any, name: str, profile_index: int) -> list[tuple[int, ...]]:
            return self._profile(name)

        ICudaEngine.num_io_tensors = property(num_io_tensors)
        for fn in (get_tensor_name, get_tensor_mode, get_tensor_shape, get_tensor_dtype, get_tensor_profile_shape):
            setattr(ICudaEngine, fn.__name__, fn)
    if binding_api:
        ICudaEngine.num_bindings = property(lambda self: len(self._io))
        ICudaEngine.get_binding_name = lambda self, index: self._io[index][0]
        ICudaEngine.binding_is_input = lambda self, index: self._io[index][1]
        ICudaEngine.get_binding_shape = lambda self, index: self._io[index][2]
        ICudaEngine.get_binding_dtype = lambda self, index: self._io[index][3]
        ICudaEngine.get_binding_index = lambda self, name: self._index(name)
        ICudaEngine.get_profile_shape = lambda self, profile_index, binding: self._profile(self._io[binding][0])

    class IProfiler:
        """Applications subclass it and call ``IProfiler.__init__(self)``, as with the pybind11 base."""

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            raise NotImplementedError

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.profiler: IProfiler | None = None
            self._shapes = {name: shape for name, is_input, shape, _ in engine._io if is_input and -1 not in shape}
            self._addresses: dict[str, int] = {}
            self._output_shapes: dict[tuple[Any, ...], list[tuple[int, ...]]] = {}

        def _set_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            declared = self.engine._io[self.engine._index(name)][2]
            if len(shape) != len(declared) or any(d != -1 and d != s for d, s in zip(declared, shape, strict=True)):
                self.engine._logger.log(Severity.ERROR, f"setInputShape: {name} shape {shape} does not match {declared}")
                return False
            if -1 in declared:
                low, _, high = self.engine._profile(name)
                if any(not lo <= s <= hi for lo, s, hi in zip(low, shape, high, strict=True)):
                    self.engine._logger.log(Severity.ERROR, f"setInputShape: {name} shape {shape} is outside the "
                                                            f"optimization profile [{low}, {high}]")
                    return False
            self._shapes[name] = shape
            return True

        def _shape(self, name: str) -> tuple[int, ...]:
            index = self.engine._index(name)
            _, is_input, declared, _ = self.engine._io[index]
            if is_input:
                return self._shapes.get(name, declared)
            inputs = [(n, s) for n, i, s, _ in self.engine._io if i]
            if any(n not in self._shapes for n, _ in inputs):
                return declared
            key = tuple(self._shapes[n] for n, _ in inputs)
            if key not in self._output_shapes:
                feeds = {n: np.zeros(self._shapes[n], to_np[self.engine._io[self.engine._index(n)][3]]) for n, _ in inputs}
                self._output_shapes[key] = [o.shape for o in self.engine._run(feeds)]
            outputs = [n for n, i, _, _ in self.engine._io if not i]
            return tuple(self._output_shapes[key][outputs.index(name)])

        def _execute(self, stream_handle: int | None) -> bool:
            if stream_handle is not None and not isinstance(stream_handle, int):
                raise TypeError("stream_handle must be an int")
            started = time.perf_counter()
            engine = self.engine
            feeds = {}
            for name, is_input, _, dtype in engine._io:
                if not self._addresses.get(name):
                    engine._logger.log(Severity.ERROR, f"enqueue: address of tensor {name} is not set")
                    return False
                if is_input:
                    if name not in self._shapes:
                        engine._logger.log(Severity.ERROR, f"enqueue: input shape of {name} is not set")
                        return False
                    shape = self._shapes[name]
                    array = np.empty(shape, to_np[dtype])
                    ctypes.memmove(array.ctypes.data, self._addresses[name], array.nbytes)
                    feeds[name] = array
            outputs = engine._run(feeds)
            names = [n for n, i, _, _ in engine._io if not i]
            for name, value in zip(names, outputs, strict=True):
                value = np.ascontiguousarray(value)
                ctypes.memmove(self._addresses[name], value.ctypes.data, value.nbytes)
            # Like TensorRT: an attached profiler hears of every layer after each execution; before 8.5 only
            # synchronous execution (execute_v2) reports.
            if self.profiler is not None and (named_api or stream_handle is None):
                layers = engine._layer_names()
                for layer in layers:
                    self.profiler.report_layer_time(layer, (time.perf_counter() - started) * 1e3 / len(layers))
            return True

    if named_api:
        def set_input_shape(self: Any, name: str, shape: Any) -> bool:
            return self._set_shape(name, shape)

        def get_tensor_shape_ctx(self: Any, name: str) -> tuple[int, ...]:
            return self._shape(name)

        def set_tensor_address(self: Any, name: str, memory: int) -> bool:
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self: Any, name: str) -> int:
            return self._addresses.get(name, 0)

        def execute_async_v3(self: Any, stream_handle: int) -> bool:
            return self._execute(stream_handle)

        IExecutionContext.set_input_shape = set_input_shape
        IExecutionContext.get_tensor_shape = get_tensor_shape_ctx
        IExecutionContext.set_tensor_address = set_tensor_address
        IExecutionContext.get_tensor_address = get_tensor_address
        IExecutionContext.execute_async_v3 = execute_async_v3
    if binding_api:
        def set_binding_shape(self: Any, binding: int, shape: Any) -> bool:
            return self._set_shape(self.engine._io[binding][0], shape)

        def get_binding_shape(self: Any, binding: int) -> tuple[int, ...]:
            return self._shape(self.engine._io[binding][0])

        def execute_async_v2(self: Any, bindings: list[int], stream_handle: int) -> bool:
            for (name, *_), address in zip(self.engine._io, bindings, strict=True):
                self._addresses[name] = int(address)
            return self._execute(stream_handle)

        def execute_v2(self: Any, bindings: list[int]) -> bool:
            for (name, *_), address in zip(self.engine._io, bindings, strict=True):
                self._addresses[name] = int(address)
            return self._execute(None)

        IExecutionContext.set_binding_shape = set_binding_shape
        IExecutionContext.get_binding_shape = get_binding_shape
        IExecutionContext.execute_async_v2 = execute_async_v2
        IExecutionContext.execute_v2 = execute_v2

    names = dict(Logger=Logger, ILogger=ILogger, Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime,
                 BuilderFlag=BuilderFlag, NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag, DataType=DataType,
                 TensorIOMode=TensorIOMode, DeviceType=DeviceType, MemoryPoolType=MemoryPoolType, nptype=nptype,
                 INetworkDefinition=INetworkDefinition, IBuilderConfig=IBuilderConfig, ICudaEngine=ICudaEngine,
                 IExecutionContext=IExecutionContext, IOptimizationProfile=IOptimizationProfile, IProfiler=IProfiler,
                 ITimingCache=ITimingCache, IHostMemory=IHostMemory)
    if weak:
        names.update(calibrators)
    if major >= 10:
        names["IProgressMonitor"] = IProgressMonitor
    for key, value in names.items():
        setattr(mod, key, value)
    return mod


def install(version: str = "10.3.0", gpu: FakeGpu | None = None, monkeypatch: Any = None) -> tuple[types.ModuleType,
                                                                                                 FakeCudaDriver]:
    """Make ``import tensorrt`` give a fake of ``version`` and edgedl's CUDA layer use a fake driver.

    With pytest's ``monkeypatch`` everything is undone after the test; without it (a
    subprocess) the change lasts for the process.
    """
    from edgedl.runtimes.cuda import memory as cuda_memory

    gpu = gpu or FakeGpu()
    module = make_module(version, gpu)
    driver = FakeCudaDriver(gpu)
    drivers = {"fake": ("numpy", lambda: driver), **{k: v for k, v in cuda_memory.DRIVERS.items() if k != "fake"}}
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        monkeypatch.setattr(cuda_memory, "DRIVERS", drivers)
        monkeypatch.setattr(cuda_memory, "_cached", {})
        monkeypatch.delenv("EDGEDL_CUDA_DRIVER", raising=False)
    else:
        sys.modules["tensorrt"] = module
        cuda_memory.DRIVERS = drivers
        cuda_memory._cached = {}
        os.environ.pop("EDGEDL_CUDA_DRIVER", None)
    return module, driver


def tiny_bundle(folder: Any) -> Any:
    """The small bundle the runtime tests load: FP32, CPU INT8, TensorRT Q/DQ INT8, FP16 and the calibration cache."""
    from pathlib import Path

    from tiny import tiny_classifier

    import edgedl

    folder = Path(folder)
    data = np.random.default_rng(0).uniform(0, 1, (40, 3, 16, 16)).astype(np.float32)
    np.save(folder / "calib.npy", data)
    bundle = edgedl.convert(tiny_classifier(folder / "m.onnx"), folder / "m.edgedl", int8=True, fp16=True, target="all",
                            calib_data=folder / "calib.npy", calib_samples=24, holdout=8, min_top1=0.5)
    return bundle.path
