"""The Backend protocol every runtime implements, and the checks of user inputs they share.

A backend is one loaded model on one runtime. It describes its inputs and
outputs and runs inference on a dict of arrays. Everything else (choosing a
backend, normalising what the user passed, checking it) happens once, outside,
so each backend stays a small file with one job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from edgedl.errors import UsageError

if TYPE_CHECKING:
    from edgedl.profiling.layers import LayerProfile


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the loaded runtime sees it. A dim is an int, or a name when dynamic."""

    name: str
    dtype: np.dtype
    shape: tuple[int | str, ...]

    @property
    def expected(self) -> str:
        """dtype and shape as a person reads them: ``float32 [batch, 3, 224, 224]``."""
        return f"{self.dtype} [{', '.join(str(d) for d in self.shape)}]"

    def __str__(self) -> str:
        return f"{self.name} {self.expected}"


@dataclass
class LoadOptions:
    """What ``edgedl.load`` passes to a backend besides the model. CPU backends ignore the GPU options."""

    device: int = 0
    shapes: Mapping[str, Any] | None = None
    batch: int | None = None
    build: bool = True
    rebuild: bool = False
    dla_core: int | None = None
    workspace_mib: int | None = None
    progress: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond ``infer``, declared so callers ask instead of probing for methods.

    ``device_io``: takes CUDA device arrays as inputs, and ``infer_device`` leaves outputs on the GPU
    (``last_device_ms`` then holds the GPU time of each call). ``layer_profiler``: the name of the
    runtime's own per-layer profiler behind ``profile_layers``, or None when the runtime has none here.
    """

    device_io: bool = False
    layer_profiler: str | None = None


@runtime_checkable
class Backend(Protocol):
    """One model loaded on one runtime."""

    name: str
    precision: str
    variant: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    capabilities: Capabilities
    last_device_ms: float | None

    def infer(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on checked inputs; outputs by name."""
        ...

    def infer_device(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """With ``capabilities.device_io``: run and leave outputs on the GPU, valid until the next call."""
        ...

    def profile_layers(self, feeds: dict[str, Any], runs: int) -> LayerProfile:
        """With ``capabilities.layer_profiler``: per-layer times over ``runs`` inferences of ``feeds``."""
        ...

    def share_cpu(self) -> None:
        """From now on, let idle runtime threads block instead of spinning: other busy threads need the cores."""
        ...

    def describe(self) -> dict[str, Any]:
        """Details worth showing a person: device, providers, engine key, threads."""
        ...

    def close(self) -> None:
        """Release the runtime's resources now (GPU memory, threads). Idempotent."""
        ...


class BackendBase:
    """What a backend without the optional capabilities answers: no device I/O, no layer profiler.

    Backends inherit it and override the capabilities they have, so every backend satisfies
    :class:`Backend` in full and the refusals are worded in one place.
    """

    name: str
    capabilities = Capabilities()
    last_device_ms: float | None = None

    def infer_device(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Refused: this backend runs on the CPU."""
        raise UsageError(f"backend {self.name} runs on the CPU; it has no device outputs",
                         fix="call without device_outputs, or load on a GPU backend")

    def profile_layers(self, feeds: dict[str, Any], runs: int) -> LayerProfile:
        """Refused: this runtime has no per-layer profiler edgedl can attach."""
        raise UsageError(f"--per-layer has no profiler for backend {self.name}",
                         fix="profile layers with --backend onnxruntime, openvino or tensorrt")

    def share_cpu(self) -> None:
        """Nothing to change: edgedl does not make this runtime's idle threads spin."""


def np_dtype(name: str) -> np.dtype:
    """A numpy dtype from a manifest or runtime type name (``float32``, ``tensor(float)``, ``f32``)."""
    aliases = {"float": "float32", "double": "float64", "f32": "float32", "f16": "float16", "half": "float16",
               "i64": "int64", "i32": "int32", "i8": "int8", "u8": "uint8", "boolean": "bool"}
    text = name.strip().lower()
    if text.startswith("tensor(") and text.endswith(")"):
        text = text[7:-1]
    return np.dtype(aliases.get(text, text))


def device_array_interface(value: Any) -> dict[str, Any] | None:
    """The ``__cuda_array_interface__`` of a GPU array (CuPy, PyTorch, Numba, edgedl's own), else None."""
    return getattr(value, "__cuda_array_interface__", None)


class InputCheck:
    """Checks the arrays a user passes against the model's inputs, naming the input and what was expected.

    Built once per model; a call costs a few dict lookups and comparisons, so the
    check stays a small fraction of even a one-millisecond inference.
    """

    def __init__(self, specs: list[TensorSpec], backend: str, device_inputs: bool) -> None:
        self._specs = specs
        self._names = [s.name for s in specs]
        self._backend = backend
        self._device_inputs = device_inputs
        self._rules = [(s.name, s.dtype, len(s.shape), [(axis, d) for axis, d in enumerate(s.shape) if isinstance(d, int)], s)
                       for s in specs]

    def normalize(self, inputs: Any, named: Mapping[str, Any]) -> dict[str, Any]:
        """A dict of inputs from a dict, keyword arguments, one array (one-input models) or a sequence in order."""
        if inputs is None:
            feeds = dict(named)
        elif isinstance(inputs, Mapping):
            feeds = dict(inputs) if not named else {**inputs, **named}
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != len(self._names):
                raise UsageError(f"got {len(inputs)} input arrays for {len(self._names)} inputs "
                                 f"({', '.join(self._names)})", fix="pass one array per input, in order, or a dict")
            feeds = dict(zip(self._names, inputs, strict=True))
        else:
            if len(self._names) != 1:
                raise UsageError(f"the model has {len(self._names)} inputs ({', '.join(self._names)}); one array is "
                                 "not enough", fix="pass a dict of arrays by input name")
            feeds = {self._names[0]: inputs}
        return feeds

    def __call__(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Return ``feeds`` unchanged when every input fits; raise a :class:`UsageError` naming the first that does not."""
        if len(feeds) != len(self._rules):
            self._names_error(feeds)
        for name, dtype, ndim, fixed, spec in self._rules:
            try:
                value = feeds[name]
            except KeyError:
                self._names_error(feeds)
            if type(value) is np.ndarray:
                vdtype, vshape = value.dtype, value.shape
            else:
                vdtype, vshape, feeds[name] = self._describe_other(name, value, spec)
            if vdtype != dtype:
                raise UsageError(f"input {name!r} is {vdtype}, expected {spec.expected}",
                                 fix=f"convert it, e.g. x.astype(np.{dtype.name}) (after any scaling the model expects)")
            if len(vshape) != ndim or any(vshape[axis] != d for axis, d in fixed):
                raise UsageError(f"input {name!r} has shape {tuple(vshape)}, expected {spec.expected}",
                                 fix="resize or reshape the array to the model's input shape")
        return feeds

    def _names_error(self, feeds: Mapping[str, Any]) -> None:
        missing = [n for n in self._names if n not in feeds]
        unknown = [n for n in feeds if n not in self._names]
        parts = []
        if missing:
            parts.append("missing input " + ", ".join(str(s) for s in self._specs if s.name in missing))
        if unknown:
            parts.append(f"unknown input {', '.join(map(repr, unknown))}")
        raise UsageError("; ".join(parts), fix=f"the model's inputs are: {', '.join(str(s) for s in self._specs)}")

    def _describe_other(self, name: str, value: Any, spec: TensorSpec) -> tuple[np.dtype, tuple[int, ...], Any]:
        """dtype, shape and the value to pass on: a device array as it is, anything array-like as numpy."""
        interface = device_array_interface(value)
        if interface is not None:
            if not self._device_inputs:
                raise UsageError(f"input {name!r} is a CUDA device array, but backend {self._backend} runs on the CPU",
                                 fix="pass a numpy array (or load the model on a GPU backend)")
            if interface.get("strides") is not None and not _contiguous(interface):
                raise UsageError(f"input {name!r} is a non-contiguous device array", fix="pass a contiguous copy")
            return np.dtype(interface["typestr"]), tuple(interface["shape"]), value
        if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
            array = np.asarray(value)
            return array.dtype, array.shape, array
        raise UsageError(f"input {name!r} is a {type(value).__name__}, expected a numpy array {spec}",
                         fix="pass numpy arrays (np.asarray(x))")


def _contiguous(interface: Mapping[str, Any]) -> bool:
    itemsize = np.dtype(interface["typestr"]).itemsize
    expected = itemsize
    for dim, stride in zip(reversed(interface["shape"]), reversed(interface["strides"]), strict=True):
        if dim != 1 and stride != expected:
            return False
        expected *= dim
    return True
