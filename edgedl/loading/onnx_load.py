"""Load an ONNX file that nobody vouches for.

Every way a file can be wrong becomes an :class:`InputFileError` with one line that names
the file and the fix. External data is checked before a single byte of it is read: each
``location`` must name a regular file inside the model's folder, so a crafted model cannot
make edgedl read ``/etc/shadow`` or ``../../secrets`` into its weights.
"""

from __future__ import annotations

import math
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx
from google.protobuf.message import Message
from onnx import helper
from onnx.external_data_helper import load_external_data_for_model

from edgedl.errors import InputFileError, UnsafeFileError
from edgedl.loading.model_file import check_model_file

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
    bad_text = _undecodable_text(model)
    if bad_text:
        raise InputFileError(f"has a {bad_text} that is not valid UTF-8", path=path,
                             fix="re-export or re-download the model; the file is corrupt")
    folder = path.parent
    if check_external_data(model, path):
        try:
            load_external_data_for_model(model, str(folder))
        except Exception as exc:
            raise InputFileError(f"external data cannot be read ({first_line(exc)})", path=path,
                                 fix="re-export the model; its .data file does not match it") from None
    _check_model(model, path)
    return model


def check_external_data(model: onnx.ModelProto, path: Path) -> bool:
    """Refuse external data that is not a plain file in the folder of ``path`` (the model's file), or whose span
    does not fit the tensor; return whether the model has any. Nothing of the data files is read."""
    folder = path.parent
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
            outside = not target.is_relative_to(root)
            linked = not outside and (folder / location).is_symlink()
            info = None if outside or linked else target.stat()
        except FileNotFoundError:
            raise InputFileError(f"{where} is missing", path=path,
                                 fix=f"put {location} next to the model (it is written with it at export)") from None
        except (OSError, ValueError, RuntimeError) as exc:  # NUL bytes, symlink loops, names too long
            raise UnsafeFileError(f"{where} cannot be resolved ({first_line(exc)})", path=path,
                                  fix=refuse_fix) from None
        if outside:
            raise UnsafeFileError(f"{where} points outside the model's folder", path=path, fix=refuse_fix)
        if linked:  # onnx refuses these too, with a less helpful message
            raise UnsafeFileError(f"{where} is a symbolic link", path=path, fix=refuse_fix)
        if not stat.S_ISREG(info.st_mode):  # a folder, or a FIFO that would block the read forever
            raise InputFileError(f"{where} is not a regular file", path=path, fix="re-export the model")
        if info.st_nlink > 1:  # a hard link made by unpacking an archive can be any file on the disk
            raise UnsafeFileError(f"{where} is a hard link", path=path, fix=refuse_fix)
        _check_span(tensor, info.st_size, where, path)
    return found


def _check_span(tensor: onnx.TensorProto, file_size: int, where: str, path: Path) -> None:
    """Refuse a span that leaves its file or holds more bytes than the tensor's elements: reading it would load
    whatever lies there (a model beside a 4 GB video, naming it, would read all of it into memory)."""
    entries = {entry.key: entry.value for entry in tensor.external_data}
    fix = "re-export the model; its external data entries are damaged"
    try:
        offset = int(entries.get("offset") or 0)
        length = int(entries.get("length") or 0) or None  # absent or 0: onnx reads to the end of the file
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (ValueError, KeyError, TypeError):
        raise InputFileError(f"{where} has a malformed offset, length or data type", path=path, fix=fix) from None
    end = file_size if length is None else offset + length
    if offset < 0 or end < offset or end > file_size or any(d < 0 for d in tensor.dims):
        raise InputFileError(f"{where} runs outside its file (offset {offset}, length {length}, file {file_size} bytes)",
                             path=path, fix=fix)
    elements = math.prod(tensor.dims)
    if end - offset > elements * itemsize:
        raise InputFileError(f"{where} spans {end - offset} bytes, more than its {elements} elements can hold",
                             path=path, fix=fix)


def _undecodable_text(model: onnx.ModelProto) -> str | None:
    """The name of the first string field that is not UTF-8, or None.

    ONNX strings are UTF-8, but protobuf does not check that for this proto2 schema: a damaged
    name or dim_param comes back as ``bytes`` and would break everything that formats it later.
    """
    stack: list[Message] = [model]
    while stack:
        item = stack.pop()
        for field, value in item.ListFields():
            if field.type not in (field.TYPE_MESSAGE, field.TYPE_STRING):
                continue
            values = [value] if isinstance(value, (Message, str, bytes)) else value
            if field.type == field.TYPE_MESSAGE:
                stack.extend(values)
            elif any(isinstance(v, bytes) for v in values):
                return field.name
    return None


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
