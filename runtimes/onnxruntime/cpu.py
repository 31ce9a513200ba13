"""ONNX Runtime on the CPU: the backend that runs everywhere."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgedl.errors import EdgeDLError, InputFileError, UsageError
from edgedl.runtimes.base import BackendBase, Capabilities, LoadOptions, TensorSpec, np_dtype
from edgedl.runtimes.source import ModelSource

NAME = "onnxruntime"
log = logging.getLogger("edgedl.runtimes")


def probe() -> str | None:
    """Why this backend cannot run here, or None. ONNX Runtime is a core dependency, so it always can."""
    return None


def choose_variant(source: ModelSource, precision: str) -> tuple[str, str]:
    """(variant key, precision) for a requested precision on a CPU runtime.

    ``auto`` takes the CPU INT8 variant unless ``convert`` measured it slower than
    FP32 (small models often are); FP16 only when asked, since CPUs rarely gain from it.
    """
    if precision == "auto":
        speedup = source.speedup("int8")
        if source.has("int8") and (speedup is None or speedup >= 1.0):
            return "int8", "int8"
        if source.has("int8"):
            log.info("%s: INT8 variant measured %.2fx FP32 speed when converted; using FP32", NAME, speedup)
        return "fp32", "fp32"
    return cpu_variant(source, precision), precision


def cpu_variant(source: ModelSource, precision: str) -> str:
    """The variant a CPU runtime uses for an explicit precision (the TensorRT Q/DQ variant runs here too)."""
    if precision == "int8":
        for key in ("int8", "int8-trt"):
            if source.has(key):
                return key
        raise UsageError(f"{source.path.name} has no INT8 variant", path=source.path,
                         fix="re-run edgedl convert --int8")
    return source.file(precision).key


def session_specs(items: list[Any]) -> list[TensorSpec]:
    """TensorSpecs from ONNX Runtime's NodeArg list; unnamed dynamic dims become ``?``."""
    return [TensorSpec(a.name, np_dtype(a.type), tuple(d if isinstance(d, int) else (d or "?") for d in a.shape))
            for a in items]


class OnnxRuntimeBackend(BackendBase):
    """One InferenceSession; ``infer`` is a direct ``session.run`` with the output names fixed up front."""

    capabilities = Capabilities(layer_profiler="onnxruntime-profiler")

    def __init__(self, session: Any, name: str, variant: str, precision: str, path: Path, fuse_qdq: bool = True) -> None:
        self._session = session
        self._path, self._fuse_qdq = path, fuse_qdq
        self.name = name
        self.variant = variant
        self.precision = precision
        self.inputs = session_specs(session.get_inputs())
        self.outputs = session_specs(session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def infer(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run on host arrays."""
        return dict(zip(self._output_names, self._session.run(self._output_names, feeds), strict=True))

    def profile_layers(self, feeds: dict[str, Any], runs: int) -> Any:
        """Per-node times from ONNX Runtime's profiler, in a second session of the same file and options."""
        from edgedl.runtimes.onnxruntime.layers import ort_layers

        threads = self._session.get_session_options().intra_op_num_threads
        return ort_layers(self._path, feeds, runs, threads, self._fuse_qdq)

    def share_cpu(self) -> None:
        """Rebuild the session with idle workers that block, unless they already do.

        The new session replaces the old one in one assignment: a call already running finishes on the old one.
        """
        from edgedl.loading.ort_session import cpu_session

        if self._idle_workers() == "spin":
            threads = self._session.get_session_options().intra_op_num_threads
            self._session = cpu_session(self._path, threads, self._fuse_qdq, spin=False)

    def describe(self) -> dict[str, Any]:
        """Providers, threads, and whether idle workers spin or block."""
        options = self._session.get_session_options()
        return {"providers": self._session.get_providers(), "intra_op_threads": options.intra_op_num_threads,
                "idle_workers": self._idle_workers()}

    def _idle_workers(self) -> str:
        """``spin`` or ``block``, as the session was built (see ``edgedl.loading.ort_session.session_options``)."""
        from edgedl.loading.ort_session import ALLOW_SPINNING

        spinning = self._session.get_session_options().get_session_config_entry(ALLOW_SPINNING) == "1"
        return "spin" if spinning else "block"

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its arena when the last reference goes)."""
        self._session = None


def open(source: ModelSource, precision: str, options: LoadOptions) -> OnnxRuntimeBackend:  # noqa: A001
    """Load the chosen variant on the CPU with the tuned session options, idle workers spinning
    (a model called on its own; a stream makes them block with :meth:`OnnxRuntimeBackend.share_cpu`)."""
    from edgedl.loading.ort_session import cpu_session

    variant, precision = choose_variant(source, precision)
    path = source.file(variant).path
    try:
        # The TensorRT variant runs here as convert validated it: Q/DQ as written. Fused into ONNX Runtime's
        # s8s8 CPU kernels it can lose accuracy (see converters/int8.py); a bundle meant to be fast on a CPU
        # has the "int8" variant (convert --target cpu|all).
        fuse_qdq = variant != "int8-trt"
        session = cpu_session(path, fuse_qdq=fuse_qdq)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (InvalidProtobuf, Fail, …) for bad models
        raise model_load_error(path, exc) from None
    return OnnxRuntimeBackend(session, NAME, variant, precision, path, fuse_qdq)


def model_load_error(path: Path, exc: BaseException, kind: type[EdgeDLError] = InputFileError,
                     fix: str = "re-run edgedl convert to rebuild the bundle, or check that the ONNX file is complete"
                     ) -> EdgeDLError:
    """A one-line error for a model ONNX Runtime could not load (damaged, altered or unsupported file)."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return kind(f"ONNX Runtime cannot load this model ({type(exc).__name__}: {first_line})", path=path, fix=fix)
