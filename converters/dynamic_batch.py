"""Make an ONNX model's batch dimension dynamic (``convert --dynamic-batch`` on an ONNX file), and prove it.

Renaming dim 0 of every input and output is the easy part; a graph can still fix its batch inside
(a Reshape to a constant ``[1, -1]``, a Tile, an Expand to a stored shape). So after the rename the
model is run on a batch of two different samples and each row is compared with the same sample run
alone: only a model whose rows match is taken, anything else is refused with what to do instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgedl.errors import UsageError
from edgedl.loading.onnx_io import describe_io
from edgedl.loading.ort_session import cpu_session

BATCH_DIM = "batch"
FIXED = "the graph fixes its batch inside, so it cannot run batches"
_ROWS_AGREE = 1e-4  # relative to each output's largest magnitude: float reassociation across batch sizes stays far below


def make_batch_dynamic(model: onnx.ModelProto, source: Path | None = None) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs' and outputs' first dim is the symbol ``batch``, checked to compute each row
    as the model did alone. Raises a :class:`UsageError` when the graph ties its batch to a fixed size."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    weights = {t.name for t in work.graph.initializer}
    values = [v for v in work.graph.input if v.name not in weights] + list(work.graph.output)
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise UsageError(f"{value.name!r} has no dimensions, so it has no batch to make dynamic", path=source,
                             fix="leave out --dynamic-batch for this model")
        dims[0].Clear()
        dims[0].dim_param = BATCH_DIM
    del work.graph.value_info[:]  # shapes inferred for batch 1 would contradict the new dim
    _check_rows(work, source)
    return work


def _check_rows(model: onnx.ModelProto, source: Path | None) -> None:
    inputs, _ = describe_io(model)
    rng = np.random.default_rng(0)
    feeds = {}
    for info in inputs:
        if any(not isinstance(d, int) for d in info.shape[1:]):
            raise UsageError(f"input {info.name!r} has dynamic dims besides the batch ({info.shape})", path=source,
                             fix="fix them with --input-shape NAME=1x... first, then add --dynamic-batch")
        feeds[info.name] = rng.uniform(0, 1, (2, *info.shape[1:])).astype(np.dtype(info.dtype))
    fix = "export the model with a dynamic batch (e.g. torch.onnx.export(..., dynamic_axes={...: {0: 'batch'}})), " \
          "or convert it without --dynamic-batch"
    try:
        session = cpu_session(model.SerializeToString())
        batched = session.run(None, feeds)
        alone = [session.run(None, {name: value[i : i + 1] for name, value in feeds.items()}) for i in range(2)]
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types when a shape inside is fixed
        raise UsageError(f"{FIXED} (a batch of 2 failed to run: {type(exc).__name__})", path=source, fix=fix) from None
    for index, output in enumerate(batched):
        rows = np.concatenate([one[index] for one in alone], axis=0)
        scale = max(float(np.abs(rows).max()), 1e-12)
        if output.shape != rows.shape or float(np.abs(output - rows).max()) > _ROWS_AGREE * scale:
            raise UsageError(f"{FIXED} (a batch of 2 did not give each sample's result alone)", path=source, fix=fix)
