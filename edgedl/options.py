"""The options of ``convert`` and ``compare``, one small frozen dataclass per concern.

``edgedl.convert`` keeps its keyword arguments for users; it builds these once, each checking its
own values as it is made, and hands them on whole to the converters. The CLI takes its defaults
from them, so a default is written in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgedl.errors import UsageError
from edgedl.preprocess import PRESETS
from edgedl.vocabulary import AUTO, CALIBRATION_METHODS, RECOVERY_TECHNIQUES, TARGETS, check_choice

#: The largest relative error of an exported model's ONNX outputs against the source model's, unless told.
DEFAULT_TOLERANCE = 1e-3
#: The largest share of its convolutions and matrix products an ``int8`` variant may keep in float; a best
#: passing mix above it is refused unless ``allow_mixed`` writes it as a labelled mixed variant.
MAX_FLOAT_SHARE = 0.25


@dataclass(frozen=True)
class ExportOptions:
    """How a model's inputs are fixed and, for a PyTorch or Keras model, how it becomes ONNX.

    ``input_shapes`` fixes inputs of any model (an ONNX file's in its graph, a framework model's at
    export) and ``dynamic_batch`` frees the batch dim of any model (an ONNX file's is checked to compute
    each row alone); the rest apply to PyTorch and Keras models only. ``tolerance`` is the largest relative
    error of the ONNX outputs against the source model's (None: :data:`DEFAULT_TOLERANCE`).
    """

    input_shapes: dict[str, list[int]] | None = None
    example_inputs: Any = None
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    dynamic_batch: bool = False
    dynamic_hw: bool = False
    layout: str | None = None
    exporter: str = AUTO
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if self.tolerance is not None and not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise UsageError(f"--tolerance must be a number above 0, got {self.tolerance}",
                             fix="for example --tolerance 1e-3")

    @property
    def framework_options_given(self) -> bool:
        """Whether an option that only a PyTorch or Keras model takes was given."""
        return (self.layout is not None or self.example_inputs is not None or self.dynamic_hw
                or self.tolerance is not None)

    @property
    def source_tolerance(self) -> float:
        """The tolerance the exported ONNX is checked against the source model with."""
        return DEFAULT_TOLERANCE if self.tolerance is None else float(self.tolerance)


@dataclass(frozen=True)
class PreprocessOptions:
    """How ``convert`` sets the preprocessing spec: a ``preset``, and each value given overriding it.

    The values are those of :class:`~edgedl.preprocess.PreprocessSpec`; the size and layout come
    from the model's image input.
    """

    preset: str | None = None
    resize: str | None = None
    color: str | None = None
    scale: float | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    pad_value: int | None = None
    dtype: str | None = None
    interpolation: str | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:
            check_choice(self.preset, PRESETS, "preprocessing preset")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> PreprocessOptions:
        """The options of ``convert(preprocess={...})``; an unknown key is a :class:`UsageError`."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options or {}) - set(names))
        if unknown:
            raise UsageError(f"unknown preprocessing option {unknown[0]!r}", fix=f"use {', '.join(names)}")
        return cls(**(options or {}))

    def values(self) -> dict[str, Any]:
        """The spec's values: the preset's, then each one given."""
        given = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "preset"}
        return {**(PRESETS[self.preset] if self.preset else {}), **{k: v for k, v in given.items() if v is not None}}


@dataclass(frozen=True)
class CalibrationOptions:
    """What INT8 is calibrated and validated on, and how.

    ``data``: a folder of images, a ``.npy`` or a ``.npz`` (None: the photographs shipped with edgedl,
    for an image model). ``samples`` calibrate; ``holdout`` more, drawn with ``seed``, are kept apart to
    validate every variant against FP32. ``recover``: which techniques win back accuracy before layers
    are kept in float: ``auto`` (all), ``none``, or a comma-separated list of :data:`RECOVERY_TECHNIQUES`.
    """

    data: str | Path | None = None
    samples: int = 128
    holdout: int = 16
    method: str = "minmax"
    seed: int = 0
    recover: str = AUTO

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UsageError(f"--calib-samples must be at least 1, got {self.samples}", fix="for example --calib-samples 128")
        check_choice(self.method, CALIBRATION_METHODS, "calibration method")
        for name in self.techniques:
            check_choice(name, RECOVERY_TECHNIQUES, "recovery technique")

    @property
    def techniques(self) -> tuple[str, ...]:
        """The recovery techniques to try, in :data:`RECOVERY_TECHNIQUES` order (given ones not known kept last,
        so that the check refuses them)."""
        if self.recover == AUTO:
            return RECOVERY_TECHNIQUES
        given = [t.strip() for t in self.recover.split(",") if t.strip() and t.strip() != "none"]
        return tuple(t for t in RECOVERY_TECHNIQUES if t in given) + tuple(t for t in given if t not in RECOVERY_TECHNIQUES)


@dataclass(frozen=True)
class Gate:
    """The accuracy a variant must keep against FP32 (or a compared run against its reference) to pass.

    ``min_detections``: for detectors, the share of FP32's detections (same class, IoU ≥ 0.5) the variant
    finds, and of its detections that FP32 also finds: what a detector's user sees, where a score row's
    cosine over thousands of anchors is not.
    """

    min_cosine: float = 0.99
    min_top1: float = 0.9
    min_detections: float = 0.95


@dataclass(frozen=True)
class VariantOptions:
    """Which variants ``convert`` adds to FP32: a calibrated INT8 for the ``target`` runtime(s), and FP16.

    ``allow_mixed``: an INT8 variant whose best passing mix keeps more than :data:`MAX_FLOAT_SHARE` of its
    convolutions and matrix products in float is written, labelled ``int8-mixed``, instead of refused.
    """

    int8: bool = False
    fp16: bool = False
    target: str = "cpu"
    allow_mixed: bool = False

    def __post_init__(self) -> None:
        check_choice(self.target, TARGETS, "target")
        if self.allow_mixed and not self.int8:
            raise UsageError("--allow-mixed applies to INT8 variants, and --int8 was not given",
                             fix="add --int8, or leave out --allow-mixed")

    @property
    def cpu_int8(self) -> bool:
        """Whether to write the INT8 variant ONNX Runtime runs on the CPU."""
        return self.int8 and self.target in ("cpu", "all")

    @property
    def tensorrt_int8(self) -> bool:
        """Whether to write TensorRT's Q/DQ variant and calibration cache."""
        return self.int8 and self.target in ("tensorrt", "all")

    @property
    def calibration_passes(self) -> int:
        """Passes over the calibration samples: one for asymmetric ranges (CPU INT8, FP16's overflow check),
        one for symmetric ones (TensorRT)."""
        return int(self.cpu_int8 or self.fp16) + int(self.tensorrt_int8)
