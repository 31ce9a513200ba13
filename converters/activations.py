"""Look inside an FP32 model: its inner tensors, one calibration sample at a time.

The recovery techniques (equalization, range choice, bias correction, rounding) all need the values
of inner tensors on calibration data. Holding every tensor of every sample would take gigabytes on a
detector, so the values are streamed: one run per sample, the caller keeps what it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import onnx

from edgedl.loading.ort_session import cpu_session
from edgedl.types import Sample


def exposing(model: onnx.ModelProto, names: Iterable[str]) -> bytes:
    """A serialized copy of ``model`` whose outputs also include every tensor in ``names``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output} | {i.name for i in copy.graph.input}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            present.add(name)
    return copy.SerializeToString()


def stream(model: onnx.ModelProto, names: list[str], samples: list[Sample]) -> Iterator[dict[str, np.ndarray]]:
    """For each sample, the float32 values of the tensors in ``names`` (graph inputs come from the sample)."""
    inputs = {i.name for i in model.graph.input}
    session = cpu_session(exposing(model, [n for n in names if n not in inputs]))
    fetch = [n for n in names if n not in inputs]
    for sample in samples:
        values = dict(zip(fetch, session.run(fetch, sample), strict=True)) if fetch else {}
        values.update({n: sample[n] for n in names if n in inputs})
        yield {n: np.asarray(v, dtype=np.float32) for n, v in values.items()}


def channel_peaks(model: onnx.ModelProto, names: list[str], samples: list[Sample]) -> dict[str, np.ndarray]:
    """Each tensor's largest absolute value per channel (axis 1), over all ``samples``."""
    peaks: dict[str, np.ndarray] = {}
    for values in stream(model, names, samples):
        for name, value in values.items():
            flat = np.abs(np.moveaxis(value, 1, 0).reshape(value.shape[1], -1)).max(axis=1)
            peaks[name] = np.maximum(peaks[name], flat) if name in peaks else flat
    return peaks
