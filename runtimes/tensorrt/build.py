"""Building a TensorRT engine from a bundle, on one code path across TensorRT 8.x, 10.x and 11.

Which variant and builder flags a precision needs depends on what the installed
TensorRT can do, detected from the module rather than parsed from its version:

- weakly typed builders (8.x, 10.x) take the FP32 graph with the FP16 flag, or the
  Q/DQ INT8 variant with the INT8 (and FP16) flags, or the FP32 graph with INT8 and
  the bundle's calibration cache (implicit quantization, while it still exists; 8.x
  takes this path when the Q/DQ variant's float part is FP16, an opset-19 graph
  its ONNX parser predates);
- strongly typed builders (11: no precision flags) take the graph whose types are
  the precision: the FP16 variant, or the Q/DQ INT8 variant.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedl.errors import DeviceError, InputFileError, UsageError
from edgedl.fsutil import atomic_write_bytes
from edgedl.manifest import TensorInfo
from edgedl.runtimes.source import ModelSource
from edgedl.vocabulary import MAX_BATCH

log = logging.getLogger("edgedl.runtimes")
HEARTBEAT_SECONDS = 15.0
Report = Callable[[str], None]
Shape = tuple[int, ...]


@dataclass(frozen=True)
class TrtFeatures:
    """What the installed TensorRT module offers, found by looking at it."""

    version: str
    weak_typing: bool
    implicit_int8: bool
    explicit_batch_flag: bool
    memory_pools: bool
    progress_monitor: bool
    fp16_qdq: bool = True  # parses Q/DQ with FP16 scales (opset 19); ONNX-TensorRT 8.x stops at opset 17

    @classmethod
    def of(cls, trt: Any) -> TrtFeatures:
        version = str(trt.__version__)
        major = int(version.split(".")[0])
        weak = hasattr(trt.BuilderFlag, "FP16")
        flags = trt.NetworkDefinitionCreationFlag
        return cls(
            version=version,
            weak_typing=weak,
            implicit_int8=weak and hasattr(trt, "IInt8EntropyCalibrator2"),
            # 8.x parses ONNX only into explicit-batch networks; 10.x ignores the flag; 11 removed it.
            explicit_batch_flag=major < 10 and hasattr(flags, "EXPLICIT_BATCH"),
            memory_pools=hasattr(trt, "MemoryPoolType"),
            progress_monitor=hasattr(trt, "IProgressMonitor"),
            fp16_qdq=major >= 10,
        )


@dataclass(frozen=True)
class Recipe:
    """How to build one engine: which variant, which builder flags, which shapes."""

    variant: str
    precision: str
    int8: str | None  # "qdq" (explicit) or "calibration-cache" (implicit)
    flags: tuple[str, ...]
    strongly_typed: bool
    profiles: dict[str, list[list[int]]] = field(default_factory=dict)
    workspace_mib: int | None = None
    dla_core: int | None = None


def cache_version(version: str) -> str:
    """The version number TensorRT writes in calibration cache headers: 8.6.1 → 8601, 10.3.0 → 100300."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return str(major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch)


def _shape(value: Any) -> list[int]:
    if isinstance(value, str):
        value = value.lower().split("x")
    return [int(d) for d in value]


def profiles(inputs: Sequence[TensorInfo], shapes: Mapping[str, Any] | None,
             batch: int | None = None) -> dict[str, list[list[int]]]:
    """min/opt/max shapes for every input with a dynamic dim.

    ``shapes`` maps an input to one shape (fixed) or to (min, opt, max). Without one, a dynamic batch
    (dim 0) gets 1/``batch``/``MAX_BATCH`` (opt 1 without ``batch``; max ``batch`` where it is larger);
    any other dynamic dim must be given.
    """
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise UsageError(f"batch size must be a whole number of at least 1, got {batch!r}",
                         fix="for example batch=4 (--batch-size 4)")
    shapes = dict(shapes or {})
    names = {i.name for i in inputs}
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise UsageError(f"shapes given for unknown input {', '.join(map(repr, unknown))}",
                         fix=f"the model's inputs are: {', '.join(sorted(names))}")
    result: dict[str, list[list[int]]] = {}
    for info in inputs:
        if info.name in shapes:
            given = shapes[info.name]
            triple = [_shape(s) for s in given] if given and not isinstance(given[0], int) and not isinstance(given, str) \
                else [_shape(given)] * 3
            if len(triple) != 3 or any(len(s) != len(info.shape) for s in triple):
                raise UsageError(f"shape for input {info.name!r} must be one shape or (min, opt, max) of rank "
                                 f"{len(info.shape)}", fix=f"its declared shape is {info.shape}")
            for axis, dim in enumerate(info.shape):
                if isinstance(dim, int) and any(s[axis] != dim for s in triple):
                    raise UsageError(f"input {info.name!r} has fixed dim {axis} = {dim}; the shape given differs",
                                     fix=f"keep dim {axis} at {dim}")
            if not all(a <= b <= c for a, b, c in zip(*triple, strict=True)):
                raise UsageError(f"shapes for input {info.name!r} are not min <= opt <= max", fix="reorder them")
            if triple[0] != triple[2] or any(not isinstance(d, int) for d in info.shape):
                result[info.name] = triple
            continue
        dynamic = [axis for axis, d in enumerate(info.shape) if not isinstance(d, int) or d < 0]
        if not dynamic:
            continue
        if dynamic != [0]:
            example = "x".join(str(d) if isinstance(d, int) else "N" for d in info.shape)
            raise UsageError(f"input {info.name!r} has dynamic dims {info.shape}; TensorRT needs their range",
                             fix=f"pass shapes={{'{info.name}': SHAPE}} or edgedl build --shape {info.name}={example}")
        opt = batch or 1
        result[info.name] = [[size, *info.shape[1:]] for size in (1, opt, max(opt, MAX_BATCH))]
    return result


def recipe(caps: TrtFeatures, source: ModelSource, precision: str, *, fast_fp16: bool, shapes: Mapping[str, Any] | None,
           workspace_mib: int | None, dla_core: int | None, batch: int | None = None) -> Recipe:
    """The variant and flags for ``precision`` (``auto``: INT8, else FP16 where it is fast, else FP32)."""
    if workspace_mib is not None and workspace_mib < 1:
        raise UsageError(f"the builder workspace must be at least 1 MiB, got {workspace_mib}",
                         fix="for example --workspace 1024, or leave it out for TensorRT's default")
    if dla_core is not None and dla_core < 0:
        raise UsageError(f"the DLA core must be 0 or more, got {dla_core}", fix="for example --dla-core 0")
    strong = not caps.weak_typing
    qdq = source.has("int8-trt") and (caps.fp16_qdq or source.file("int8-trt").details.get("float_precision") != "fp16")
    can_int8 = qdq or (caps.implicit_int8 and source.calibration_cache is not None)
    can_fp16 = source.has("fp16") if strong else fast_fp16
    if precision == "auto":
        precision = "int8" if can_int8 else "fp16" if can_fp16 else "fp32"
    flags: list[str] = []
    int8 = None
    if precision == "fp32":
        if dla_core is not None:
            raise UsageError("the DLA runs FP16 or INT8 engines only", fix="pass precision='fp16' or 'int8'")
        variant = "fp32"
    elif precision == "fp16":
        if strong:
            if not source.has("fp16"):
                raise UsageError(f"TensorRT {caps.version} builds strongly typed networks only, so FP16 needs the "
                                 "bundle's fp16 variant", path=source.path, fix="re-run edgedl convert --fp16")
            variant = "fp16"
        else:
            variant, flags = "fp32", ["FP16"]
    elif precision == "int8":
        if qdq:
            variant, int8 = "int8-trt", "qdq"
            flags = [] if strong else ["INT8", "FP16"]
        elif caps.implicit_int8 and source.calibration_cache is not None:
            variant, int8, flags = "fp32", "calibration-cache", ["INT8", "FP16"]
        else:
            why = (f"TensorRT {caps.version} has no implicit INT8 calibration" if strong
                   else f"the bundle's TensorRT Q/DQ variant is an FP16 graph (opset 19) that TensorRT {caps.version} "
                        "cannot parse, and it has no calibration cache" if source.has("int8-trt")
                   else "the bundle has neither a TensorRT Q/DQ variant nor a calibration cache")
            raise UsageError(f"cannot build INT8: {why}", path=source.path,
                             fix="re-run edgedl convert --int8 --target tensorrt")
    else:
        raise UsageError(f"unknown precision {precision!r}", fix="use auto, fp32, fp16 or int8")
    if dla_core is not None:
        flags.append("GPU_FALLBACK")
    source.file(variant)
    return Recipe(variant, precision, int8, tuple(flags), strong, profiles(source.inputs, shapes, batch), workspace_mib,
                  dla_core)


class TrtLog:
    """A TensorRT logger that forwards to Python logging and keeps recent errors for our messages."""

    def __init__(self, trt: Any) -> None:
        errors: collections.deque[str] = collections.deque(maxlen=8)
        severity = trt.ILogger.Severity
        levels = {severity.INTERNAL_ERROR: logging.ERROR, severity.ERROR: logging.ERROR,
                  severity.WARNING: logging.WARNING, severity.INFO: logging.DEBUG, severity.VERBOSE: logging.DEBUG}
        trt_log = logging.getLogger("edgedl.tensorrt")

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, level: Any, message: str) -> None:
                python_level = levels.get(level, logging.INFO)
                if python_level >= logging.ERROR:
                    errors.append(str(message))
                trt_log.log(python_level, "%s", message)

        self.logger = _Logger()
        self.errors = errors

    def last_errors(self) -> str:
        """The last errors TensorRT logged, joined for a message; cleared after reading."""
        text = "; ".join(self.errors) or "TensorRT logged no error; re-run with --verbose"
        self.errors.clear()
        return text


def _progress_monitor(trt: Any, report: Report) -> Any:
    """An IProgressMonitor that reports each phase TensorRT enters, and its steps at most once a second."""
    lock = threading.Lock()
    last: dict[str, float] = {}

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with lock:
                prefix = f"{parent_phase} > " if parent_phase else ""
                report(f"{prefix}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            now = time.monotonic()
            with lock:
                if now - last.get(phase_name, 0.0) >= 1.0:
                    last[phase_name] = now
                    report(f"{phase_name}: step {step + 1}")
            return True

        def phase_finish(self, phase_name: str) -> None:
            with lock:
                last.pop(phase_name, None)

    return _Monitor()


@contextlib.contextmanager
def heartbeat(report: Report, interval: float | None = None) -> Iterator[None]:
    """Report the elapsed time every ``interval`` seconds until the block ends: builds take minutes."""
    interval = HEARTBEAT_SECONDS if interval is None else interval
    stop = threading.Event()
    started = time.monotonic()

    def beat() -> None:
        while not stop.wait(interval):
            minutes, seconds = divmod(int(time.monotonic() - started), 60)
            report(f"still building ({minutes}m{seconds:02d}s; TensorRT builds take minutes on a Jetson)")

    thread = threading.Thread(target=beat, name="edgedl-build-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _calibrator(trt: Any, cache: Path, version: str) -> Any:
    """A calibrator that hands TensorRT the bundle's cache (header rewritten to this TensorRT) and no data."""
    from edgedl.loading.calib_cache import read_cache

    header, _ = read_cache(cache)
    algorithm = header.split("-", 2)[2] if header.count("-") >= 2 else "EntropyCalibration2"
    base = {"EntropyCalibration2": "IInt8EntropyCalibrator2", "EntropyCalibration": "IInt8EntropyCalibrator",
            "MinMaxCalibration": "IInt8MinMaxCalibrator", "LegacyCalibration": "IInt8LegacyCalibrator"}.get(
        algorithm, "IInt8EntropyCalibrator2")
    lines = cache.read_bytes().split(b"\n")
    lines[0] = f"TRT-{cache_version(version)}-{algorithm}".encode()
    data = b"\n".join(lines)

    class _CacheOnly(getattr(trt, base)):  # type: ignore[misc]
        def __init__(self) -> None:
            getattr(trt, base).__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None  # no calibration data: every scale comes from the cache

        def read_calibration_cache(self) -> bytes:
            return data

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return _CacheOnly()


def network_flags(trt: Any, caps: TrtFeatures) -> int:
    """Creation flags: explicit batch where TensorRT still needs it to parse ONNX, nothing else."""
    flags = 0
    if caps.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return flags


def build_plan(trt: Any, caps: TrtFeatures, plan: Recipe, source: ModelSource, timing_cache: Path,
               report: Report) -> tuple[bytes, dict[str, Any]]:
    """Parse the variant, configure the builder, build; returns the serialized plan and build details."""
    trt_log = TrtLog(trt)
    onnx_path = source.file(plan.variant).path
    builder = trt.Builder(trt_log.logger)
    network = builder.create_network(network_flags(trt, caps))
    parser = trt.OnnxParser(network, trt_log.logger)
    report(f"parsing {onnx_path.name} with TensorRT {caps.version}")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or trt_log.last_errors()
        raise InputFileError(f"TensorRT's ONNX parser rejected the model: {errors}", path=onnx_path,
                             fix="run it with backend='onnxruntime', or replace the unsupported layer")
    config = builder.create_builder_config()
    if plan.workspace_mib is not None:
        limit = plan.workspace_mib << 20
        if caps.memory_pools:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, limit)
        else:
            config.max_workspace_size = limit
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in plan.profiles.items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
    if plan.int8 == "calibration-cache":
        assert source.calibration_cache is not None
        config.int8_calibrator = _calibrator(trt, source.calibration_cache, caps.version)
        if plan.profiles and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
    if plan.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    cache_blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_blob), False)
    if caps.progress_monitor:
        config.progress_monitor = _progress_monitor(trt, report)
    flags = ", ".join(plan.flags) or ("strongly typed" if plan.strongly_typed else "FP32")
    report(f"building {plan.precision} engine from {plan.variant} ({flags}); this can take minutes")
    started = time.monotonic()
    with heartbeat(report):
        serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - started
    if serialized is None:
        raise DeviceError(f"TensorRT could not build the engine: {trt_log.last_errors()}",
                          fix="check the log with --verbose; a smaller --workspace or another precision may help")
    with contextlib.suppress(OSError):
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    report(f"built in {seconds:.1f}s")
    return bytes(serialized), {"build_seconds": round(seconds, 2), "flags": list(plan.flags)}
