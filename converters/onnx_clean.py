"""Make a third-party ONNX export (Ultralytics, Paddle2ONNX, tf2onnx, torch.onnx) ready to quantize.

Steps, each skipped or undone when it would break the model: weights listed as graph inputs
become plain initializers (old exporters do that, and it blocks folding and quantization);
input dims are fixed where the caller asks; opsets below 13 are upgraded to 13 (per-channel
INT8 in ONNX Runtime needs it); constants are folded and the graph simplified; shapes are
inferred; unused nodes and initializers go. Input and output names never change.

Folding uses onnxslim, not ONNX Runtime's offline ORT_ENABLE_BASIC pass. Measured on the
tests/onnx_factory.py models and torch exports: ORT saves the graph its CPU provider would run
(float16 ops wrapped in Cast nodes, eight unused contrib opset domains imported), no longer a
plain model for TensorRT; onnxslim keeps float16 and Q/DQ pairs as they are, folds shape
arithmetic over static dims even with a symbolic batch (14 -> 8 nodes, ORT 10), and cleans a
10 MB model in 0.3 s on two cores (ORT 0.1 s). ORT's Reshape fusion does fold a dynamic-batch
TorchScript flatten that onnxslim keeps; once shapes are fixed both fold it.
"""

from __future__ import annotations

import logging
import numbers
import tempfile
from collections.abc import Iterable
from pathlib import Path

import onnx
import onnx.version_converter
from onnx import helper, shape_inference
from onnx.external_data_helper import load_external_data_for_model

from edgedl.errors import InputFileError, MissingDependencyError, UsageError
from edgedl.loading.onnx_io import dim_value
from edgedl.loading.onnx_load import PROTOBUF_LIMIT, first_line, payload_bytes

log = logging.getLogger("edgedl.convert")

TARGET_OPSET = 13


def clean_model(model: onnx.ModelProto, input_shapes: dict[str, list[int]] | None = None,
                source: Path | None = None) -> onnx.ModelProto:
    """Return a cleaned copy of ``model``; ``input_shapes`` maps input names to full static shapes.

    Dims not fixed through ``input_shapes`` stay symbolic. ``source`` names the file in errors.
    Raises :class:`UsageError` for an unknown input name or a shape that does not fit, and
    :class:`InputFileError` when the result fails the ONNX checker (the input was invalid).
    Models over 2 GB skip the opset upgrade and folding, which need the model serialized whole.
    """
    work = onnx.ModelProto()
    work.CopyFrom(model)
    _weights_out_of_inputs(work)
    _forget_negative_dims(work)
    if input_shapes:
        _fix_input_shapes(work, input_shapes, source)
    large = payload_bytes(work) >= PROTOBUF_LIMIT
    if large:
        log.warning("%s is over 2 GB: skipping opset upgrade and constant folding", source or "model")
    else:
        work = _upgrade_opset(work)
        work = _fold(work)
    with tempfile.TemporaryDirectory(prefix="edgedl-clean-") as tmp:
        work = _infer_shapes(work, Path(tmp) if large else None)
        _prune(work.graph)
        _name_nodes(work.graph)
        _check(work, source, Path(tmp) if large else None)
    return work


def _shape_text(value: onnx.ValueInfoProto) -> str:
    return f"{value.name} [{','.join(str(dim_value(d)) for d in value.type.tensor_type.shape.dim)}]"


def _weights_out_of_inputs(model: onnx.ModelProto) -> None:
    """Old exporters (IR < 4 style) list every initializer as a graph input too; keep only real inputs."""
    weights = {t.name for t in model.graph.initializer}
    real = [v for v in model.graph.input if v.name not in weights]
    if len(real) == len(model.graph.input):
        return
    del model.graph.input[:]
    model.graph.input.extend(real)
    model.ir_version = max(model.ir_version, 4)  # IR 3 required weights to be inputs


def _forget_negative_dims(model: onnx.ModelProto) -> None:
    """Some exporters write -1 for a dynamic dim; ONNX spells that as a dim with no value."""
    for value in (*model.graph.input, *model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value < 0:
                dim.Clear()


def _fix_input_shapes(model: onnx.ModelProto, input_shapes: dict[str, list[int]], source: Path | None) -> None:
    inputs = {v.name: v for v in model.graph.input}
    listing = "inputs are " + ", ".join(_shape_text(v) for v in model.graph.input)
    for name, shape in input_shapes.items():
        value = inputs.get(name)
        if value is None:
            raise UsageError(f"model has no input {name!r}", path=source, fix=listing)
        dims = value.type.tensor_type.shape.dim
        if len(shape) != len(dims):
            raise UsageError(f"input {name!r} has {len(dims)} dims, the shape given has {len(shape)}",
                             path=source, fix=listing)
        for axis, (dim, size) in enumerate(zip(dims, shape, strict=True)):
            if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
                raise UsageError(f"input {name!r} dim {axis} must be a positive integer, got {size!r}",
                                 path=source, fix=listing)
            if dim.HasField("dim_value") and dim.dim_value != size:
                raise UsageError(f"input {name!r} dim {axis} is fixed at {dim.dim_value} in the model, "
                                 f"not {size}", path=source, fix=listing)
    for name, shape in input_shapes.items():
        for dim, size in zip(inputs[name].type.tensor_type.shape.dim, shape, strict=True):
            dim.Clear()
            dim.dim_value = int(size)
    # Shapes recorded for the old symbolic dims would now contradict inference; let it redo them.
    del model.graph.value_info[:]


def _default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = _default_opset(model)
    if opset >= TARGET_OPSET:
        return model
    try:
        upgraded = onnx.version_converter.convert_version(model, TARGET_OPSET)
        upgraded.ir_version = max(upgraded.ir_version,
                                  helper.find_min_ir_version_for(list(upgraded.opset_import), ignore_unknown=True))
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # the converter lacks adapters for some ops and domains
        log.warning("kept opset %d: conversion to %d failed (%s)", opset, TARGET_OPSET, first_line(exc))
        return model
    if not _same_io_names(model, upgraded):
        log.warning("kept opset %d: conversion to %d renamed inputs or outputs", opset, TARGET_OPSET)
        return model
    return upgraded


def _fold(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants and simplify with onnxslim; keep ``model`` if that fails or renames anything."""
    try:
        import onnxslim
    except ImportError:
        raise MissingDependencyError("constant folding needs onnxslim", fix="pip install onnxslim") from None
    original = onnx.ModelProto()
    original.CopyFrom(model)  # onnxslim edits its argument in place
    try:
        slimmed = onnxslim.slim(model)
        onnx.checker.check_model(slimmed)
    except Exception as exc:  # an optimizer bug must not cost the user the conversion
        log.warning("skipped constant folding: onnxslim failed (%s)", first_line(exc))
        return original
    if slimmed is None or not _same_io_names(original, slimmed):
        log.warning("skipped constant folding: onnxslim changed the model's inputs or outputs")
        return original
    # onnxslim names unnamed dynamic dims after their tensor (images_d0) and spreads them through
    # value_info; keep the declared input and output types and let shape inference redo the rest.
    for field in ("input", "output", "value_info"):
        slimmed.graph.ClearField(field)
    slimmed.graph.input.extend(original.graph.input)
    slimmed.graph.output.extend(original.graph.output)
    # onnxslim rebuilds the ModelProto; keep the original's metadata (doc string, producer, labels).
    original.graph.CopyFrom(slimmed.graph)
    return original


def _infer_shapes(model: onnx.ModelProto, tmp: Path | None) -> onnx.ModelProto:
    """Shape inference with data propagation, then without; the model as it was if both fail."""
    for data_prop in (True, False):
        try:
            if tmp is None:
                return shape_inference.infer_shapes(model, data_prop=data_prop)
            src = _save_external(model, tmp / "in.onnx")
            shape_inference.infer_shapes_path(str(src), str(tmp / "out.onnx"), data_prop=data_prop)
            inferred = onnx.load_model(str(tmp / "out.onnx"), load_external_data=False)
            load_external_data_for_model(inferred, str(tmp))
            return inferred
        except Exception as exc:  # inference has gaps for contrib ops and exotic opsets
            log.info("shape inference (data_prop=%s) failed: %s", data_prop, first_line(exc))
    return model


def _save_external(model: onnx.ModelProto, path: Path) -> Path:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)
    return path


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes no output depends on, then initializers and value_info nothing uses."""
    needed = {v.name for v in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
            needed.update(_subgraph_inputs(node))
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(reversed(kept))
    produced = needed | {o for n in graph.node for o in n.output}
    for field in (graph.initializer, graph.value_info):
        unused = [item for item in field if item.name not in produced]
        for item in unused:
            field.remove(item)


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give every node a unique name: quantization excludes and reports layers by node name."""
    seen: set[str] = set()
    for index, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}_{index}"
        seen.add(node.name)


def _subgraph_inputs(node: onnx.NodeProto) -> Iterable[str]:
    """Every name a node's subgraphs (If/Loop/Scan bodies) read, so outer values they use stay."""
    for attr in node.attribute:
        for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
            for inner in sub.node:
                yield from inner.input
                yield from _subgraph_inputs(inner)


def _check(model: onnx.ModelProto, source: Path | None, tmp: Path | None) -> None:
    try:
        if tmp is None:
            onnx.checker.check_model(model)
        else:
            onnx.checker.check_model(str(_save_external(model, tmp / "checked.onnx")))
    except Exception as exc:
        raise InputFileError(f"model fails the ONNX checker after cleanup: {first_line(exc)}", path=source,
                             fix="check the model with onnx.checker.check_model and re-export it") from None


def _same_io_names(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    def names(m: onnx.ModelProto) -> tuple[list[str], list[str]]:
        weights = {t.name for t in m.graph.initializer}
        return [v.name for v in m.graph.input if v.name not in weights], [v.name for v in m.graph.output]

    return names(a) == names(b)

