"""The names edgedl's options take, each list defined once.

The Python API checks values against these lists and the CLI offers them as its choices, so a
new entry reaches both. Converters and runtimes both import this module; it imports only edgedl's
errors. The preprocessing words (presets, resize modes, colour orders, layouts) live with
the spec they describe, in :mod:`edgedl.preprocess`.
"""

from __future__ import annotations

from collections.abc import Collection

from edgedl.errors import UsageError

#: Let edgedl choose: the fastest backend, the best precision a bundle has, the exporter that works.
AUTO = "auto"
#: What a model's outputs mean, which picks its postprocessor.
TASKS: tuple[str, ...] = ("classify", "detect", "segment", "raw")
#: Numeric precisions a bundle's variants come in, in the order they are listed.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
#: The label of an INT8 variant written with ``--allow-mixed`` that keeps more than a quarter of its
#: convolutions and matrix products in float (its precision stays ``int8``, so runtimes load it alike).
MIXED_INT8 = "int8-mixed"
#: Which runtime ``convert`` writes INT8 variants for: ONNX Runtime on the CPU, TensorRT, or both.
TARGETS: tuple[str, ...] = ("cpu", "tensorrt", "all")
#: How calibration turns observed tensor values into INT8 ranges (ONNX Runtime's calibrators).
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
#: What ``convert`` tries, in this order, to win back INT8 accuracy before keeping layers in float
#: (``--recover``: ``auto`` is all of them, ``none`` none; see :mod:`edgedl.converters.recover`).
RECOVERY_TECHNIQUES: tuple[str, ...] = ("equalize", "ranges", "bias", "adaround")
#: Inference backends, in the order ``auto`` tries them.
BACKENDS: tuple[str, ...] = ("tensorrt", "onnxruntime-gpu", "openvino", "onnxruntime")
#: PyTorch ONNX exporters: ``auto`` is dynamo, with TorchScript where ``torch.export`` cannot capture.
EXPORTERS: tuple[str, ...] = (AUTO, "dynamo", "torchscript")
#: Where a stream preprocesses frames.
DEVICE_PREPROCESS: tuple[str, ...] = (AUTO, "cpu", "gpu")
#: The largest batch used without being asked for: a stream's default over many cameras, and the top of a TensorRT
#: engine's profile for a dynamic batch, so the batches a stream makes are the batches the engine was built for.
MAX_BATCH = 8


def check_choice(value: str, choices: Collection[str], what: str) -> None:
    """Refuse a ``value`` that is not one of ``choices`` with a :class:`UsageError` naming ``what`` and the choices."""
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}", fix=f"use one of {', '.join(choices)}")
