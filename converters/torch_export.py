"""PyTorch → ONNX for edge runtimes.

Exporter: the dynamo exporter (``torch.export`` capture, onnxscript translation) first. It folds
batch norm into convolutions, drops dropout, and lets ``torch.export`` work out which dims can stay
dynamic. Where capture fails (data-dependent Python control flow, unsupported tracing features) the
TorchScript exporter takes over, and TorchScript archives can only go that way. A translation
failure is not retried: an op the dynamo exporter cannot express is reported with its layer.

Opset 17: TensorRT 8.5/8.6 (JetPack 5 and 6.0) parse ONNX up to opset 17, and ONNX Runtime and
OpenVINO read it everywhere. In torch 2.13 the dynamo exporter writes opset 18 only; its own
down-conversion fails on ReduceMean, so we convert with ``onnx.version_converter`` and drop the one
attribute it leaves behind (``noop_with_empty_axes``, opset 18 only). If that ever fails the model
keeps opset 18 and the manifest says so.

Node names come from the module path (``/stem/stem.0/Conv``), so reports and INT8 exclusions name
layers; the exporter's per-node metadata (stack traces with the user's file paths) is dropped.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import onnx.version_converter

from edgedl.errors import InputFileError, UsageError
from edgedl.loading.onnx_load import first_line
from edgedl.vocabulary import EXPORTERS, check_choice

OPSET = 17
DYNAMO_OPSET = 18
log = logging.getLogger("edgedl.convert")


@dataclass
class TorchOnnx:
    """An exported model and how it was made."""

    proto: onnx.ModelProto
    exporter: str
    opset: int
    notes: list[str] = field(default_factory=list)


def export_program(program: Any, args: tuple[Any, ...], *, input_names: list[str], output_names: list[str],
                   dynamic_axes: dict[str, dict[int, str]], exporter: str = "auto",
                   source: Path | None = None) -> TorchOnnx:
    """Export an ``nn.Module``, ``ExportedProgram`` or ``ScriptModule`` called with ``args`` to ONNX.

    ``dynamic_axes`` maps input names to ``{axis: dim name}``; every other dim is fixed to the
    example's size. Raises :class:`InputFileError` naming the op and layer when an op has no ONNX
    form, and when a dim asked to stay dynamic is fixed by the model itself.
    """
    import torch

    check_choice(exporter, EXPORTERS, "exporter")
    notes: list[str] = []
    if isinstance(program, torch.jit.ScriptModule):
        if exporter == "dynamo":
            raise UsageError("TorchScript models export with the TorchScript exporter only", path=source,
                             fix="drop --exporter dynamo, or convert the eager module in Python")
        exporter = "torchscript"
    elif isinstance(program, torch.export.ExportedProgram):
        if exporter == "torchscript":
            raise UsageError("torch.export programs export with the dynamo exporter only", path=source,
                             fix="drop --exporter torchscript")
        exporter = "dynamo"
    if exporter in ("auto", "dynamo"):
        captured = program if isinstance(program, torch.export.ExportedProgram) else None
        if captured is None:
            try:
                captured = _capture(torch, program, args, input_names, dynamic_axes)
            except Exception as exc:  # torch.export refuses: data-dependent control flow and the like
                if exporter == "dynamo":
                    raise InputFileError(f"torch.export cannot capture the model ({first_line(exc)})", path=source,
                                         fix="use --exporter torchscript, or make the control flow static") from None
                notes.append(f"torch.export capture failed ({first_line(exc)[:200]}); used the TorchScript exporter")
                log.info("falling back to the TorchScript exporter: %s", first_line(exc))
        if captured is not None:
            proto = _translate(torch, captured, input_names, output_names, source)
            _rename_dims(proto, dynamic_axes, source)
            proto, opset = _downgrade(proto, notes)
            return TorchOnnx(proto, "dynamo", opset, notes)
    proto = _torchscript(torch, program, args, input_names, output_names, dynamic_axes, source)
    return TorchOnnx(proto, "torchscript", OPSET, notes)


def _capture(torch: Any, module: Any, args: tuple[Any, ...], input_names: list[str],
             dynamic_axes: dict[str, dict[int, str]]) -> Any:
    import inspect

    auto = torch.export.Dim.AUTO
    shapes: Any = tuple({axis: auto for axis in dynamic_axes.get(name, {})} or None for name in input_names)
    if not any(shapes):
        shapes = None
    else:
        params = list(inspect.signature(module.forward).parameters.values())
        if len(params) == 1 and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
            shapes = (shapes,)  # forward(*inputs): torch.export sees one argument holding them all
    with _quiet():
        return torch.export.export(module, args, dynamic_shapes=shapes, strict=False)


def _translate(torch: Any, program: Any, input_names: list[str], output_names: list[str],
               source: Path | None) -> onnx.ModelProto:
    try:
        with _quiet():
            onnx_program = torch.onnx.export(program, (), dynamo=True, opset_version=DYNAMO_OPSET,
                                             input_names=input_names, output_names=output_names,
                                             optimize=True, verbose=False)
    except Exception as exc:
        raise _unsupported(exc, program, source) from None
    proto = onnx_program.model_proto
    _name_nodes_by_module(proto.graph)
    return proto


def _torchscript(torch: Any, program: Any, args: tuple[Any, ...], input_names: list[str], output_names: list[str],
                 dynamic_axes: dict[str, dict[int, str]], source: Path | None) -> onnx.ModelProto:
    axes: dict[str, dict[int, str]] = {k: dict(v) for k, v in dynamic_axes.items() if v}
    batch = any("batch" in v.values() for v in axes.values())
    for name in output_names:
        if batch:
            axes[name] = {0: "batch"}
    with tempfile.TemporaryDirectory(prefix="edgedl-torch-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with _quiet():
                torch.onnx.export(program, args, str(path), dynamo=False, opset_version=OPSET,
                                  input_names=input_names, output_names=output_names, dynamic_axes=axes or None,
                                  do_constant_folding=True)
        except Exception as exc:
            raise _unsupported(exc, None, source) from None
        return onnx.load_model(str(path))


def _unsupported(exc: BaseException, program: Any, source: Path | None) -> InputFileError:
    """Name the op (and, from the captured program, the layer) that has no ONNX form."""
    text = " ".join(str(e) for e in _chain(exc))
    found = re.search(r"target=torch\.ops\.(\w+\.\w+)", text) or re.search(r"'(\w+::\w+)'", text) or \
        re.search(r"\b(aten[.:]{1,2}\w+)", text)
    if found is None:
        return InputFileError(f"ONNX export failed ({first_line(exc)[:300]})", path=source,
                              fix="run with --verbose for the exporter's message; simplify the model's forward()")
    op = found.group(1).replace("::", ".")
    layer = _layer_of(program, op)
    where = f" (layer {layer})" if layer else ""
    return InputFileError(f"op {op}{where} has no ONNX form the exporters know (opset {OPSET}-{DYNAMO_OPSET})",
                          path=source, fix="replace that op with supported ones in the model's code, "
                                           "or keep it outside the exported model")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1


def _layer_of(program: Any, op: str) -> str | None:
    """The module path and class of the first call to ``op`` in a captured program."""
    graph = getattr(program, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return None
    for node in graph.nodes:
        target = str(node.target)
        if node.op == "call_function" and (target == op or target.startswith(op + ".")):
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            where = []
            if stack and stack[-1][0]:
                path, kind = stack[-1]
                where.append(f"{path} ({getattr(kind, '__name__', None) or str(kind).rsplit('.', 1)[-1]})")
            frame = _user_frame(node.meta.get("stack_trace") or "")
            if frame:
                where.append(f"called at {frame}")
            return ", ".join(where) or None
    return None


def _user_frame(trace: str) -> str | None:
    """The innermost frame of the user's own code (outside installed packages) in a captured stack trace."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', trace)
    for file, line, function in reversed(frames):
        if "-packages" not in file:
            return f"{Path(file).name}:{line} in {function}"
    return None


def _name_nodes_by_module(graph: onnx.GraphProto) -> None:
    """``/stem/stem.0/Conv`` from the exporter's name scopes; then drop all per-node metadata."""
    for node in graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes:
            parts = re.findall(r"'([^']*)'", scopes)[1:-1]  # first is the root, last the aten op
            node.name = "/" + "/".join([*parts, node.op_type])
        del node.metadata_props[:]
        node.doc_string = ""


def _rename_dims(proto: onnx.ModelProto, dynamic_axes: dict[str, dict[int, str]], source: Path | None) -> None:
    """Give dynamic dims the names asked for (``batch``) instead of torch's symbols (``s77``).

    A program that arrives with a dynamic first dim (a ``.pt2``) gets ``batch`` there too.
    """
    mapping: dict[str, str] = {}
    inputs = {v.name: v for v in proto.graph.input}
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param and value.name not in dynamic_axes:
            mapping[dims[0].dim_param] = "batch"
    for name, axes in dynamic_axes.items():
        dims = inputs[name].type.tensor_type.shape.dim
        for axis, wanted in axes.items():
            dim = dims[axis]
            if not dim.dim_param:
                raise InputFileError(f"input {name!r} dim {axis} cannot be dynamic: the model fixes it to "
                                     f"{dim.dim_value} (a reshape or view with that size written in)", path=source,
                                     fix="drop the dynamic option, or compute that size from the input's shape")
            mapping[dim.dim_param] = wanted
    if not mapping:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in mapping) + r")\b")
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: mapping[m.group(1)], dim.dim_param)


def _downgrade(proto: onnx.ModelProto, notes: list[str]) -> tuple[onnx.ModelProto, int]:
    try:
        converted = onnx.version_converter.convert_version(proto, OPSET)
        for node in converted.graph.node:
            if node.op_type.startswith("Reduce") and node.op_type != "ReduceSum":
                for attribute in list(node.attribute):
                    if attribute.name == "noop_with_empty_axes" and attribute.i == 0:
                        node.attribute.remove(attribute)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter lacks adapters for some ops
        notes.append(f"kept opset {DYNAMO_OPSET}: conversion to {OPSET} failed ({first_line(exc)[:200]})")
        log.warning("kept opset %d: conversion to %d failed (%s)", DYNAMO_OPSET, OPSET, first_line(exc))
        return proto, DYNAMO_OPSET
    return converted, OPSET


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the exporters' progress lines, warnings and C++ dumps off the user's terminal (logged with -v)."""
    buffer = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript", "torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer), \
                _native_output_to(buffer):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if buffer.getvalue().strip():
            log.info("exporter output:\n%s", buffer.getvalue().strip()[-4000:])


@contextlib.contextmanager
def _native_output_to(buffer: io.StringIO) -> Iterator[None]:
    """Capture what C++ code writes to file descriptors 1 and 2 (the TorchScript exporter's graph dumps)."""
    try:
        fds = [sys.__stdout__.fileno(), sys.__stderr__.fileno()]  # type: ignore[union-attr]
    except (AttributeError, ValueError, io.UnsupportedOperation):
        yield
        return
    for stream in (sys.__stdout__, sys.__stderr__):
        stream.flush()  # type: ignore[union-attr]
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile() as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in zip(fds, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            buffer.write(sink.read().decode("utf-8", "replace"))
