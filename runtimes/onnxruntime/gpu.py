"""ONNX Runtime with its TensorRT or CUDA execution provider, fed through IO binding.

Used where the ``tensorrt`` Python module is missing but ``onnxruntime-gpu`` is
installed. The TensorRT provider caches its engines in the bundle's
``engines/ort-trt/``; the CUDA provider is the fallback for ops TensorRT lacks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgedl.errors import DeviceError
from edgedl.runtimes.base import Capabilities, LoadOptions, device_array_interface
from edgedl.runtimes.onnxruntime.cpu import OnnxRuntimeBackend, cpu_variant, model_load_error
from edgedl.runtimes.source import ModelSource

NAME = "onnxruntime-gpu"
TRT_EP, CUDA_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider"
log = logging.getLogger("edgedl.runtimes")


def _available() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def probe() -> str | None:
    """Why ONNX Runtime cannot use a GPU here, or None."""
    available = _available()
    if TRT_EP not in available and CUDA_EP not in available:
        return ("this onnxruntime has no TensorRT or CUDA provider (pip install onnxruntime-gpu; "
                "on Jetson, the onnxruntime-gpu wheel for your JetPack)")
    from edgedl.runtimes.cuda.memory import device_count_or_reason

    count, reason = device_count_or_reason()
    return reason if count == 0 else None


def choose_variant(source: ModelSource, precision: str, tensorrt_provider: bool) -> tuple[str, str]:
    """TensorRT's provider: the Q/DQ INT8 variant, else FP32 built as FP16. CUDA's: the FP16 variant, else FP32."""
    if precision != "auto":
        if precision == "fp16" and tensorrt_provider:
            return "fp32", "fp16"  # TensorRT picks FP16 kernels per layer from the FP32 graph
        if precision == "int8" and source.has("int8-trt"):
            return "int8-trt", "int8"
        return cpu_variant(source, precision), precision
    if tensorrt_provider:
        return ("int8-trt", "int8") if source.has("int8-trt") else ("fp32", "fp16")
    return ("fp16", "fp16") if source.has("fp16") else ("fp32", "fp32")


def _providers(source: ModelSource, precision: str, device: int, tensorrt_provider: bool) -> list[Any]:
    cuda = (CUDA_EP, {"device_id": device, "cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": True})
    providers: list[Any] = [cuda, "CPUExecutionProvider"]
    if tensorrt_provider:
        cache = source.engine_dir / "ort-trt"
        cache.mkdir(parents=True, exist_ok=True)
        providers.insert(0, (TRT_EP, {
            "device_id": device, "trt_fp16_enable": precision in ("fp16", "int8"), "trt_int8_enable": precision == "int8",
            "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache)}))
    return providers


class OnnxRuntimeGpuBackend(OnnxRuntimeBackend):
    """IO binding: host inputs are copied once by ONNX Runtime, device arrays are bound where they lie."""

    # No layer profiler: under the TensorRT provider the graph is one fused node in ONNX Runtime's trace, and the
    # CUDA provider's node times are those of asynchronous kernel launches, not of the kernels.
    capabilities = Capabilities()

    def __init__(self, session: Any, variant: str, precision: str, device: int, path: Path) -> None:
        super().__init__(session, NAME, variant, precision, path)
        self._device = device
        self._binding = session.io_binding()

    def infer(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Bind inputs (host or CUDA), bind outputs on the GPU, run, copy outputs to the host."""
        binding = self._binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        for name, value in feeds.items():
            interface = device_array_interface(value)
            if interface is None:
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_input(name, "cuda", self._device, np.dtype(interface["typestr"]), tuple(interface["shape"]),
                                   int(interface["data"][0]))
        for name in self._output_names:
            binding.bind_output(name, "cuda", self._device)
        self._session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu(), strict=True))

    def describe(self) -> dict[str, Any]:
        """Providers actually in use and the device."""
        return {**super().describe(), "device": self._device}


def open(source: ModelSource, precision: str, options: LoadOptions) -> OnnxRuntimeGpuBackend:  # noqa: A001
    """A session on the GPU; refuses (rather than silently running on the CPU) when no GPU provider starts."""
    import onnxruntime as ort

    from edgedl.loading.ort_session import session_options

    tensorrt_provider = TRT_EP in _available()
    variant, precision = choose_variant(source, precision, tensorrt_provider)
    providers = _providers(source, precision, options.device, tensorrt_provider)
    path = source.file(variant).path
    try:
        # Idle CPU workers block: they run only the nodes the GPU providers leave, and share_cpu must not
        # rebuild this session (it would do so on the CPU).
        session = ort.InferenceSession(str(path), session_options(spin=False), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad models and failed providers
        raise model_load_error(path, exc, DeviceError, "check the CUDA/cuDNN/TensorRT libraries match this "
                               "onnxruntime-gpu build; if the file is damaged, re-run edgedl convert") from None
    active = session.get_providers()
    if active[0] not in (TRT_EP, CUDA_EP):
        raise DeviceError(f"onnxruntime could not start a GPU provider (it fell back to {active[0]})",
                          fix="check the CUDA/cuDNN/TensorRT libraries match this onnxruntime-gpu build")
    log.info("%s: providers %s", NAME, ", ".join(active))
    return OnnxRuntimeGpuBackend(session, variant, precision, options.device, path)
