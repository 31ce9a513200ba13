"""Load an ONNX file that nobody vouches for.

Every way a file can be wrong becomes an :class:`InputFileError` with one line that names
the file and the fix. External data is checked before a single byte of it is read: each
``location`` must name a regular file inside the model's folder, so a crafted model cannot
make edgedl read ``/etc/shadow`` or ``../../secrets`` into its weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx
from onnx.external_data_helper import load_external_data_for_model

from edgedl.converters.model_file import check_model_file
from edgedl.errors import InputFileError, UnsafeFileError

# A serialized protobuf cannot exceed 2 GiB; bigger models can only be checked from their path.
PROTOBUF_LIMIT = 2**31 - 1


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read, validate and return the model at ``path`` with its external data loaded.

    Raises :class:`InputFileError` for a missing, empty, truncated or non-ONNX file, a Git LFS
    pointer, missing external data or a model the ONNX checker rejects, and
    :class:`UnsafeFileError` for external data that points outside the model's folder.
    """
    path = Path(path)
    check_model_file(path, "an ONNX file", "pass the .onnx file inside it")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError, RuntimeError, … depending on the protobuf backend
        raise InputFileError(f"is not an ONNX model ({first_line(exc)})", path=path,
                             fix="re-export or re-download the model; the file is corrupt or truncated") from None
    if not model.HasField("graph") or not model.opset_import:
        missing = "graph" if not model.HasField("graph") else "opset_import"
        raise InputFileError(f"is not a complete ONNX model (no {missing})", path=path,
                             fix="re-export or re-download the model; the file is corrupt or truncated")
    folder = path.parent
    if _check_external_data(model, path, folder):
        try:
            load_external_data_for_model(model, str(folder))
        except Exception as exc:
            raise InputFileError(f"external data cannot be read ({first_line(exc)})", path=path,
                                 fix="re-export the model; its .data file does not match it") from None
    _check_model(model, path)
    return model


def _check_external_data(model: onnx.ModelProto, path: Path, folder: Path) -> bool:
    """Refuse external data outside ``folder``; return whether the model has any."""
    root = folder.resolve()
    found = False
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        found = True
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        where = f"external data {location!r} of tensor {tensor.name!r}"
        refuse_fix = "keep the .data file in the model's folder as a real file (not a link) and re-save the model"
        if not location:
            raise InputFileError(f"tensor {tensor.name!r} is external but names no file", path=path,
                                 fix="re-export the model")
        if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or \
                PureWindowsPath(location).drive:
            raise UnsafeFileError(f"{where} is an absolute path", path=path, fix=refuse_fix)
        try:
            target = (folder / location).resolve()
        except (OSError, ValueError, RuntimeError) as exc:  # NUL bytes, symlink loops
            raise UnsafeFileError(f"{where} cannot be resolved ({first_line(exc)})", path=path,
                                  fix=refuse_fix) from None
        if not target.is_relative_to(root):
            raise UnsafeFileError(f"{where} points outside the model's folder", path=path, fix=refuse_fix)
        if (folder / location).is_symlink():  # onnx refuses these too, with a less helpful message
            raise UnsafeFileError(f"{where} is a symbolic link", path=path, fix=refuse_fix)
        if not target.is_file():
            raise InputFileError(f"{where} is missing", path=path,
                                 fix=f"put {location} next to the model (it is written with it at export)")
    return found


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in ``graph``: initializers, sparse ones, attribute tensors, subgraphs too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def _check_model(model: onnx.ModelProto, path: Path) -> None:
    try:
        if payload_bytes(model) < PROTOBUF_LIMIT:
            onnx.checker.check_model(model)
        else:  # too big to serialize in one piece: let the checker read it from disk
            onnx.checker.check_model(str(path))
    except Exception as exc:  # ValidationError, or a crash inside the checker on malformed input
        raise InputFileError(f"fails the ONNX checker: {first_line(exc)}", path=path,
                             fix="re-export the model with a current exporter") from None


def payload_bytes(model: onnx.ModelProto) -> int:
    """Serialized size of the graph's heavy parts, computed without serializing the whole model."""
    graph = model.graph
    return sum(t.ByteSize() for t in graph.initializer) + sum(n.ByteSize() for n in graph.node) + \
        sum(s.ByteSize() for s in graph.sparse_initializer)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()
