"""Fuzz every loader of untrusted bytes: random, truncated, bit-flipped and structurally broken files.

    python tools/fuzz_loaders.py --minutes 2                    # every installed target, equal time each
    python tools/fuzz_loaders.py --minutes 60 --targets onnx,manifest --seed 7
    python tools/fuzz_loaders.py --replay onnx-external:0:1234   # one case again, in this process
    python tools/fuzz_loaders.py --load keras-h5 fuzz-failures/keras-h5-220/model.h5   # a saved failing case
    python tools/fuzz_loaders.py --pathological                 # hand-made hang and allocation bombs

Each target is a small valid file built here (an ONNX model with inline or external weights, a bundle
made by ``edgedl convert``, a TensorRT calibration cache, an engine record and plan, PyTorch and Keras
files) and its loader. A case copies the seed's folder, applies one mutation to one of its files and
calls the loader, which must return a valid object or raise an ``EdgeDLError`` with a one-line message:
any other exception, a hang past the time limit, a crash or runaway memory is a failure. Beside every
model sits a secret holding a canary token, reachable through ``../``, absolute paths, links, a FIFO,
``/dev/zero`` and a huge file; loaded weights must never contain the token.

Targets share the time equally (a Keras load, which reads its HDF5 in a child process, costs as much
as a hundred ONNX loads). Cases run in a worker subprocess with an address-space cap and a hard watchdog
(``faulthandler``), so a segfault, a hang inside C code or an allocation bomb ends only the worker: the
parent records the case it was running, keeps a copy of its files in ``--keep`` and starts a new worker
at the next case. Case ``i`` of a target is the same mutation for the same ``--seed``; the Keras ``.h5``,
TorchScript and legacy ``torch.save`` seeds embed timestamps or random ids, so for those ``--load`` on the
kept files is the exact reproduction. tests/test_fuzz_loaders.py drives the same seeds, mutations and
contract with hypothesis.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgedl.errors import EdgeDLError  # noqa: E402

CANARY = "EDGEDL-CANARY-7f3a9c1e5b"
#: Seconds one load may take before it counts as a hang (tiny files load in milliseconds).
SOFT_LIMIT_S = 5.0
#: Address space a worker may add beyond what it holds after its imports.
MEMORY_LIMIT_BYTES = 2 << 30

Mutator = Callable[[bytes, random.Random], bytes]


class Hang(BaseException):
    """A load ran past its time limit. A BaseException, so a loader's ``except Exception`` cannot hide it."""


class ContractViolation(AssertionError):
    """A loader broke its contract: valid object, or an EdgeDLError with one line."""


@contextlib.contextmanager
def time_limit(seconds: float = SOFT_LIMIT_S) -> Iterator[None]:
    """Raise :class:`Hang` after ``seconds``; if even that cannot interrupt (C code), dump tracebacks and exit.

    The soft limit is SIGALRM, so it works only in the main thread; the hard one is faulthandler's
    watchdog thread, which needs no GIL and ends the process, so a hang never stalls a test run forever.
    """

    def expire(*_: Any) -> None:
        raise Hang(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds * 3 + 10, exit=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def check_contract(load: Callable[[Path], Any], path: Path, seconds: float = SOFT_LIMIT_S) -> str:
    """Call ``load(path)`` under a time limit: ``"loaded"``, or ``"refused: <class>"`` for a proper EdgeDLError.

    Raises :class:`ContractViolation` for any other exception, a hang, or an error message that is
    not one line.
    """
    try:
        with time_limit(seconds):
            load(path)
    except EdgeDLError as exc:
        message = str(exc)
        if not message.strip() or "\n" in message or "\r" in message:
            raise ContractViolation(f"{type(exc).__name__} message is not one line: {message!r}") from exc
        return f"refused: {type(exc).__name__}"
    except ContractViolation:
        raise
    except Hang as exc:
        raise ContractViolation(f"hang: {exc}") from exc
    except Exception as exc:
        raise ContractViolation(f"{type(exc).__name__} escaped: {str(exc)[:300]}") from exc
    return "loaded"


# ---------------------------------------------------------------------------------------------- byte mutations

INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
               b"\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x00\x00\x00\x00", b"\xfe\xff\xff\xff\x0f"]


def _offset(data: bytes, rng: random.Random) -> int:
    """An offset of one of the kinds that break parsers: the ends, just inside them, or anywhere."""
    n = len(data)
    return min(n, max(0, rng.choice([0, 1, rng.randint(0, 16), n // 2, n - 1, n - rng.randint(1, 16),
                                     rng.randint(0, n)])))


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    """Unrelated bytes, sometimes behind the seed's first bytes (its magic number) so parsing gets further."""
    noise = rng.randbytes(rng.choice([0, 1, 7, 64, rng.randint(0, 4096)]))
    return data[: rng.choice([0, 4, 8, 16])] + noise


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: _offset(data, rng)]


def bit_flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 8])):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def insert_bytes(data: bytes, rng: random.Random) -> bytes:
    at = _offset(data, rng)
    return data[:at] + rng.choice([rng.randbytes(rng.randint(1, 64)), rng.choice(INTERESTING)]) + data[at:]


def delete_span(data: bytes, rng: random.Random) -> bytes:
    at = _offset(data, rng)
    return data[:at] + data[at + rng.randint(1, 64):]


def overwrite_interesting(data: bytes, rng: random.Random) -> bytes:
    """Length and count fields set to 0, -1, 2**31 and friends."""
    at, value = _offset(data, rng), rng.choice(INTERESTING)
    return data[:at] + value + data[at + len(value):]


def duplicate_span(data: bytes, rng: random.Random) -> bytes:
    start = _offset(data, rng)
    chunk = data[start:start + rng.randint(1, 256)]
    at = _offset(data, rng)
    return data[:at] + chunk * rng.randint(1, 8) + data[at:]


BYTE_MUTATORS: dict[str, Mutator] = {
    "random-bytes": random_bytes, "truncate": truncate, "bit-flip": bit_flip, "insert": insert_bytes,
    "delete": delete_span, "interesting": overwrite_interesting, "duplicate": duplicate_span,
}


# ---------------------------------------------------------------------------------------------- JSON mutations

TRICKY_STRINGS = ["", " ", "\x00", "..", "../../etc/passwd", "/etc/passwd", "C:\\Windows\\win.ini", "\ud800",
                  "\u202eevil", "é", "😀" * 3, "a" * 10000, "\ufeff", "line\nbreak", "NaN", "1e999", "0x10", "-1",
                  "model.onnx", "fp32", "float32", "NCHW", "classify", "batch"]


def random_json(rng: random.Random, depth: int = 2) -> Any:
    """A JSON value of any type, leaning to the edges: huge, negative, empty, odd strings, nested."""
    kind = rng.randrange(9 if depth > 0 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 3, 2**31, -(2**63), 2**64 + 1, 10**30, rng.randint(-10**6, 10**6)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e-320, float("inf"), float("nan"), 3.0])
    if kind in (4, 5):
        return rng.choice(TRICKY_STRINGS)
    if kind == 6:
        return []
    if kind == 7:
        return [random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(TRICKY_STRINGS): random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))}


def _locations(value: Any, at: tuple = ()) -> Iterator[tuple]:
    yield at
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _locations(child, (*at, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _locations(child, (*at, index))


def _replace(value: Any, at: tuple, new: Any) -> Any:
    if not at:
        return new
    parent = value
    for step in at[:-1]:
        parent = parent[step]
    parent[at[-1]] = new
    return value


def _json_edit(edit: Callable[[Any, random.Random], Any]) -> Mutator:
    """A byte mutator that parses the seed's JSON, edits the value and writes it back."""

    def mutate(data: bytes, rng: random.Random) -> bytes:
        return json.dumps(edit(json.loads(data), rng), ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")

    return mutate


def _replace_node(value: Any, rng: random.Random) -> Any:
    return _replace(value, rng.choice(list(_locations(value))), random_json(rng))


def _delete_node(value: Any, rng: random.Random) -> Any:
    parents = [at for at in _locations(value) if _get(value, at) and isinstance(_get(value, at), (dict, list))]
    if not parents:
        return value
    parent = _get(value, rng.choice(parents))
    key = rng.choice(list(parent)) if isinstance(parent, dict) else rng.randrange(len(parent))
    del parent[key]
    return value


def _add_key(value: Any, rng: random.Random) -> Any:
    dicts = [at for at in _locations(value) if isinstance(_get(value, at), dict)]
    if dicts:
        _get(value, rng.choice(dicts))[rng.choice(TRICKY_STRINGS)] = random_json(rng)
    return value


def _get(value: Any, at: tuple) -> Any:
    for step in at:
        value = value[step]
    return value


_PLACEHOLDER = "@@FUZZ@@"


def _text_node(texts: list[str]) -> Mutator:
    """Put raw JSON text that ``json.dumps`` cannot write (10**5 digits, 100k-deep arrays) at a random node."""

    def mutate(data: bytes, rng: random.Random) -> bytes:
        value = json.loads(data)
        value = _replace(value, rng.choice(list(_locations(value))), _PLACEHOLDER)
        return json.dumps(value).replace(json.dumps(_PLACEHOLDER), rng.choice(texts), 1).encode()

    return mutate


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


JSON_MUTATORS: dict[str, Mutator] = {
    "json-replace": _json_edit(_replace_node),
    "json-delete": _json_edit(_delete_node),
    "json-add-key": _json_edit(_add_key),
    "json-huge-number": _text_node(["9" * 5000, "1e400", "-1e400", "NaN", "-Infinity", "1" + "0" * 400 + ".5",
                                    "123456789012345678901234567890"]),
    "json-deep": _text_node([_deep(100), _deep(5000), _deep(200_000), '{"a":' * 3000 + "1" + "}" * 3000]),
    "json-unicode": _text_node(['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\u202e\\u200b"', '"\\ufeff"',
                                '"' + "\\u00e9" * 20000 + '"']),
    "json-text": lambda data, rng: rng.choice([b"\xef\xbb\xbf" + data, data + b" trailing", data.replace(b"{", b"{\xff", 1),
                                               data.replace(b"{", b'{"name": 1, "name": 2, ', 1), data * 2]),
}


# ---------------------------------------------------------------------------------------------- ONNX mutations

#: A canary at a fixed absolute path, for locations that name it outright (written by :func:`write_secret`).
ABSOLUTE_SECRET = Path(tempfile.gettempdir()) / "edgedl-fuzz-secret.data"
EXTERNAL_TRICKS = ["../secret.data", "../../secret.data", "sub/../../secret.data", str(ABSOLUTE_SECRET), "/etc/passwd",
                   "C:\\secret.data", "\\\\server\\share\\x.data", "file:///etc/passwd", "link-out.data",
                   "link-in.data", "hard.data", "fifo.data", "zero.data", "sub", ".", "..", "", "weights.data\x00x",
                   "missing.data", "weights.data", "x" * 5000, "weights.data/..", "%2e%2e/secret.data", "~/secret.data",
                   "sub/../weights.data", "loop.data", "big.data"]


def _onnx_edit(edit: Callable[[Any, random.Random], None]) -> Mutator:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        import onnx

        model = onnx.ModelProto.FromString(data)
        edit(model, rng)
        return model.SerializeToString()

    return mutate


def _pick_tensor(model: Any, rng: random.Random) -> Any:
    return rng.choice(list(model.graph.initializer))


def _wrong_dtype(model: Any, rng: random.Random) -> None:
    _pick_tensor(model, rng).data_type = rng.choice([0, 2, 7, 8, 9, 10, 13, 16, 17, 23, 25, 40, 2**31 - 1, -1])


HUGE_DIMS = [-1, 0, -(2**63), 2**62, 2**63 - 1, 2**31, 1 << 40]


def _bad_dims(model: Any, rng: random.Random) -> None:
    if rng.random() < 0.5:
        tensor = _pick_tensor(model, rng)
        del tensor.dims[:]
        tensor.dims.extend(rng.choice(HUGE_DIMS) for _ in range(rng.randint(1, 4)))
    else:
        value = rng.choice([*model.graph.input, *model.graph.output])
        for dim in value.type.tensor_type.shape.dim:
            if rng.random() < 0.5:
                dim.dim_value = rng.choice(HUGE_DIMS)


def _huge_claim(model: Any, rng: random.Random) -> None:
    """A tensor that claims terabytes while holding a few bytes."""
    tensor = _pick_tensor(model, rng)
    del tensor.dims[:]
    tensor.dims.extend([1 << 20, 1 << 20, rng.choice([1, 1 << 10])])


def _drop_initializer(model: Any, rng: random.Random) -> None:
    del model.graph.initializer[rng.randrange(len(model.graph.initializer))]


def _cycle(model: Any, rng: random.Random) -> None:
    first = rng.choice([n for n in model.graph.node if n.input])
    first.input[0] = rng.choice(list(model.graph.node)).output[0]


def _bogus_opset(model: Any, rng: random.Random) -> None:
    entry = model.opset_import[0]
    choice = rng.randrange(4)
    if choice == 0:
        entry.version = rng.choice([-1, 0, 1, 6, 10**6, 2**62])
    elif choice == 1:
        entry.domain = rng.choice(["com.evil", "ai.onnx.ml", "\x00", "ai.onnx"])
    elif choice == 2:
        model.opset_import.add(domain="", version=rng.choice([1, 17, 99]))
    else:
        model.ir_version = rng.choice([-1, 0, 1, 3, 99, 2**62])


def _bad_names(model: Any, rng: random.Random) -> None:
    name = rng.choice(["", "x", "\x00", "é" * 50, "a" * 10000, model.graph.initializer[0].name])
    target = rng.choice([*model.graph.input, *model.graph.output, *model.graph.initializer, *model.graph.node])
    target.name = name


def _bad_attribute(model: Any, rng: random.Random) -> None:
    node = rng.choice(list(model.graph.node))
    attr = node.attribute.add()
    attr.name = rng.choice(["pads", "strides", "group", "kernel_shape", "axis", "value", ""])
    attr.type = rng.choice([0, 1, 2, 3, 4, 5, 7, 13])
    attr.ints.extend(rng.choice(HUGE_DIMS) for _ in range(rng.randint(0, 6)))


def _nested_graphs(model: Any, rng: random.Random) -> None:
    """Wrap the graph in If nodes ``depth`` deep: recursion in our tensor walk and in the checker."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import helper

    depth = rng.choice([2, 8, 20, 40])  # protobuf's own nesting limit (100 messages) is near 33 levels
    cond = helper.make_tensor("cond", onnx.TensorProto.BOOL, [], [True])
    plain = onnx.GraphProto()
    plain.CopyFrom(model.graph)
    del plain.input[:]
    graph = model.graph
    for level in range(depth):  # the else branch stays the plain graph, so the size grows linearly
        branch = onnx.GraphProto()
        branch.CopyFrom(graph)
        branch.name = f"level{level}"
        del branch.input[:]
        try:
            node = helper.make_node("If", ["cond"], [o.name for o in graph.output], then_branch=branch, else_branch=plain)
        except DecodeError:  # too deep for protobuf to copy: as deep as a file can get
            break
        graph = helper.make_graph([node], f"outer{level}", list(model.graph.input), list(model.graph.output), [cond])
    model.graph.CopyFrom(graph)


def _point_external(model: Any, rng: random.Random, tensor: Any | None = None) -> None:
    """Make a tensor's data external, at one of the locations a crafted model would use."""
    import onnx

    tensor = tensor or _pick_tensor(model, rng)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    del tensor.external_data[:]
    location = rng.choice(EXTERNAL_TRICKS)
    if rng.random() < 0.9:
        tensor.external_data.add(key="location", value=location)
    for key in rng.sample(["offset", "length", "checksum", "basepath", "evil"], rng.randint(0, 3)):
        tensor.external_data.add(key=key, value=str(rng.choice([0, -1, 4, 2**63, "x", "", 10**30])))


def _external_everywhere(model: Any, rng: random.Random) -> None:
    """Every tensor external (at the same trick), as exporters write it."""
    for tensor in model.graph.initializer:
        _point_external(model, random.Random(rng.random()) if rng.random() < 0.3 else random.Random(0), tensor)


ONNX_MUTATORS: dict[str, Mutator] = {
    "onnx-dtype": _onnx_edit(_wrong_dtype), "onnx-dims": _onnx_edit(_bad_dims),
    "onnx-huge-tensor": _onnx_edit(_huge_claim), "onnx-missing-initializer": _onnx_edit(_drop_initializer),
    "onnx-cycle": _onnx_edit(_cycle), "onnx-opset": _onnx_edit(_bogus_opset), "onnx-names": _onnx_edit(_bad_names),
    "onnx-attribute": _onnx_edit(_bad_attribute), "onnx-nested": _onnx_edit(_nested_graphs),
    "onnx-external-location": _onnx_edit(_point_external),
}
EXTERNAL_MUTATORS: dict[str, Mutator] = {
    "onnx-external-location": _onnx_edit(_point_external), "onnx-external-all": _onnx_edit(_external_everywhere),
}


# ---------------------------------------------------------------------------------------------- cache mutations

def _cache_line(data: bytes, rng: random.Random) -> bytes:
    lines = data.decode("ascii").split("\n")
    name = rng.choice(["images", "", ":", ": ", "a: b", "x" * 5000, "conv/out", "é"])
    value = rng.choice(["7fc00000", "7f800000", "ff800000", "00000000", "80000000", "bf800000", "zzzzzzzz",
                        "1234567", "123456789", "", "3c010204", " 3c01020", "0x3c0102", "3c 01 02"])
    line = rng.choice([f"{name}: {value}", f"{name}:{value}", f"{name}: {value}\r", f"{name}\x0b: {value}", name])
    lines.insert(rng.randint(1, len(lines)), line) if rng.random() < 0.5 else lines.__setitem__(
        rng.randrange(len(lines)), line)
    return "\n".join(lines).encode("utf-8")


def _cache_header(data: bytes, rng: random.Random) -> bytes:
    header = rng.choice(["", "TRT-", "TRT-8601", "TRT-x-y-z", "trt-8601-EntropyCalibration2", "TRT-8601-Entropy\r",
                         "\ufeffTRT-8601-EntropyCalibration2", "TRT-" + "9" * 5000 + "-MinMaxCalibration"])
    return header.encode("utf-8") + data[data.index(b"\n"):]


CACHE_MUTATORS: dict[str, Mutator] = {"cache-line": _cache_line, "cache-header": _cache_header}


# ---------------------------------------------------------------------------------------------- zip members

def zip_member(pattern: str, inner: dict[str, Mutator]) -> Mutator:
    """Mutate one member (name ending with ``pattern``) of a zip archive and write a valid archive around it.

    Byte mutations of a whole archive mostly trip its CRCs; this reaches the parser of the member itself.
    """

    def mutate(data: bytes, rng: random.Random) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as archive, zipfile.ZipFile(out, "w") as target:
            names = [n for n in archive.namelist() if n.endswith(pattern)]
            chosen = rng.choice(names) if names else None
            name, mutator = rng.choice(sorted(inner.items()))
            for info in archive.infolist():
                member = archive.read(info.filename)
                if info.filename == chosen:
                    member = mutator(member, rng)
                target.writestr(info, member)
        return out.getvalue()

    return mutate


# ---------------------------------------------------------------------------------------------- seeds and targets

def tiny_onnx() -> Any:
    """A checked five-node model: Conv → Relu → Add(Constant) → ReduceMean → Flatten, with three initializers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((2, 3, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "b"),
               numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]
    shift = numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float32), "shift_value")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Constant", [], ["shift"], name="const", value=shift),
             helper.make_node("Add", ["r", "shift"], ["a"], name="add"),
             helper.make_node("ReduceMean", ["a", "axes"], ["m"], name="mean", keepdims=0)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                              [helper.make_tensor_value_info("m", TensorProto.FLOAT, ["batch", 2])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="edgedl-fuzz")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_secret(root: Path) -> Path:
    """The file a crafted model would try to read: the canary token, the size of real weights."""
    content = (CANARY.encode() * 64)[:1024]
    if not ABSOLUTE_SECRET.is_file():
        ABSOLUTE_SECRET.write_bytes(content)
    secret = root / "secret.data"
    secret.write_bytes(content)
    return secret


def plant_tricks(folder: Path, secret: Path) -> None:
    """What an extracted archive can leave in a model folder: links out and in, a FIFO, a device, a folder, a
    loop, and a 256 MiB file (sparse) that weights read to their file's end would load whole."""
    (folder / "sub").mkdir(exist_ok=True)
    with open(folder / "big.data", "wb") as fh:
        fh.truncate(256 << 20)
    # Relative link targets, so a copy of the folder keeps pointing where the original did.
    for name, target in (("link-out.data", Path("..") / secret.name), ("link-in.data", Path("weights.data")),
                         ("zero.data", Path("/dev/zero")), ("loop.data", Path("loop.data"))):
        with contextlib.suppress(FileExistsError):
            (folder / name).symlink_to(target)
    with contextlib.suppress(FileExistsError):
        os.link(secret, folder / "hard.data")
    with contextlib.suppress(FileExistsError):
        os.mkfifo(folder / "fifo.data")


def seed_onnx(root: Path) -> Path:
    """``root/model/model.onnx`` with its weights inline, beside the canary secret and planted links."""
    folder = root / "model"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(tiny_onnx().SerializeToString())
    plant_tricks(folder, write_secret(root))
    return folder / "model.onnx"


def seed_onnx_external(root: Path) -> Path:
    """``root/model/model.onnx`` whose weights live in ``weights.data`` beside it."""
    import onnx

    folder = root / "model"
    folder.mkdir(parents=True)
    model = tiny_onnx()
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=0)
    plant_tricks(folder, write_secret(root))
    return folder / "model.onnx"


def load_onnx_checked(path: Path) -> Any:
    """``load_onnx``, and the canary must not be in what it loaded."""
    from edgedl.loading.onnx_load import load_onnx

    model = load_onnx(path)
    if CANARY.encode() in model.SerializeToString():
        raise ContractViolation(f"{path}: the secret outside the model folder was loaded as weights")
    return model


def seed_bundle(root: Path) -> Path:
    """A bundle as ``edgedl convert`` writes it (FP32, INT8 for the CPU and for TensorRT, a calibration cache)."""
    import numpy as np

    from edgedl.conversion import convert

    source = root / "source"
    source.mkdir(parents=True)
    (source / "tiny.onnx").write_bytes(tiny_onnx().SerializeToString())
    np.save(source / "calib.npy", np.random.default_rng(0).random((12, 3, 4, 4), dtype=np.float32))
    convert(source / "tiny.onnx", root / "m.edgedl", int8=True, calib_data=source / "calib.npy", calib_samples=8,
            holdout=4, min_top1=0.0, labels=["a", "b"], target="all")
    return root / "m.edgedl"


def open_bundle_checked(path: Path) -> Any:
    """``Bundle.open``; what loads must have the types the manifest's classes declare, survive a round trip
    through its own manifest form, and hold only text that can be written out (no lone surrogates)."""
    from edgedl.bundle import Bundle
    from edgedl.manifest import Manifest

    bundle = Bundle.open(path)
    problems = list(manifest_type_errors(bundle.manifest))
    text = bundle.manifest.dumps()
    if Manifest.from_dict(json.loads(text), path).dumps() != text:
        problems.append("changed in a round trip")
    try:
        json.dumps(bundle.manifest.to_dict(), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        problems.append(f"holds text that cannot be written ({exc.reason})")
    if problems:
        raise ContractViolation(f"{path}: manifest accepted but {'; '.join(problems)}")
    return bundle


def seed_shipped_bundle(root: Path) -> Path:
    """The bundle of :func:`seed_bundle` with the tricks of :func:`plant_tricks` planted in it."""
    bundle = seed_bundle(root)
    plant_tricks(bundle, write_secret(root))
    return bundle


def open_shipped_bundle(path: Path) -> Any:
    """A bundle as whoever ships one can make it: the manifest's hashes match its files, whatever they hold."""
    manifest = path / "edgedl.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    for variant in data["variants"].values():
        variant["sha256"] = hashlib.sha256((path / variant["file"]).read_bytes()).hexdigest()
    manifest.write_text(json.dumps(data), encoding="utf-8")
    return open_bundle_checked(path)


def manifest_type_errors(manifest: Any) -> Iterator[str]:
    """Fields of a loaded manifest whose values do not have the type its dataclasses declare."""
    import math

    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(value: Any) -> bool:
        return (integer(value) or isinstance(value, float)) and math.isfinite(value)

    checks = [("name", isinstance(manifest.name, str)), ("labels", all(isinstance(x, str) for x in manifest.labels)),
              ("preprocess input", manifest.preprocess_input is None or isinstance(manifest.preprocess_input, str))]
    for info in [*manifest.inputs, *manifest.outputs]:
        checks += [(f"tensor {info.name!r} shape", all(integer(d) or isinstance(d, str) for d in info.shape)),
                   (f"tensor {info.name!r} layout", info.layout is None or isinstance(info.layout, str))]
    spec = manifest.preprocess
    if spec is not None:
        checks += [("preprocess size", integer(spec.width) and integer(spec.height) and integer(spec.pad_value)),
                   ("preprocess numbers", all(number(v) for v in (spec.scale, *spec.mean, *spec.std)))]
    yield from (f"its {what} has the wrong type" for what, ok in checks if not ok)
def seed_cache(root: Path) -> Path:
    from edgedl.loading.calib_cache import write_cache

    root.mkdir(parents=True, exist_ok=True)
    write_cache(root / "calibration.cache", {"images": 1.0, "/conv1/Conv_output_0": 6.35, "logits": 20.0})
    return root / "calibration.cache"


def read_cache_checked(path: Path) -> Any:
    """``read_cache``; every scale it returns must be one TensorRT can use (finite, positive)."""
    import math

    from edgedl.loading.calib_cache import read_cache

    header, scales = read_cache(path)
    bad = {name: s for name, s in scales.items() if not (math.isfinite(s) and s > 0) or not name}
    if bad or not header.startswith("TRT-"):
        raise ContractViolation(f"{path}: unusable scales or header accepted: {header[:40]!r} {bad}")
    return header, scales


ENGINE_FIELDS = {"variant": "int8-trt", "precision": "int8", "tensorrt": "10.3.0", "gpu": "Orin", "dla_core": None,
                 "shapes": {"images": [[1, 3, 8, 8], [1, 3, 8, 8], [4, 3, 8, 8]]}}


def seed_engine(root: Path) -> Path:
    """An engine cache folder holding one plan and its record."""
    from edgedl.runtimes.tensorrt.engine_cache import EngineCache, engine_key

    folder = root / "engines"
    EngineCache(folder).store(engine_key(**ENGINE_FIELDS), b"PLAN" + bytes(range(256)) * 4, {"build_seconds": 1.5})
    return folder


def load_engine_checked(folder: Path) -> Any:
    """``EngineCache.load`` gives the stored plan or None, and ``entries`` lists records; neither may raise."""
    from edgedl.runtimes.tensorrt.engine_cache import EngineCache, engine_key

    cache = EngineCache(folder)
    plan = cache.load(engine_key(**ENGINE_FIELDS))
    if plan is not None and plan != b"PLAN" + bytes(range(256)) * 4:
        raise ContractViolation(f"{folder}: a plan that is not the one recorded was accepted")
    return plan, cache.entries()


def _engine_file(suffix: str) -> str:
    from edgedl.runtimes.tensorrt.engine_cache import engine_key

    return engine_key(**ENGINE_FIELDS).id + suffix


def seed_torch_pickle(root: Path) -> Path:
    """A ``torch.save`` state dict (zip format): what most ``.pt`` files on the internet are."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    torch.save({"conv.weight": torch.ones(2, 3, 3, 3), "conv.bias": torch.zeros(2), "step": 3}, root / "model.pt")
    return root / "model.pt"


def seed_torch_legacy(root: Path) -> Path:
    """The same in torch's legacy (pre-1.6, non-zip) format, which reads storage sizes from the file."""
    import torch

    root.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.ones(2, 3), "b": torch.zeros(2)}, root / "model.pth", _use_new_zipfile_serialization=False)
    return root / "model.pth"


def _tiny_module() -> Any:
    import torch

    torch.manual_seed(0)  # the same weights, so the same seed file, in every run
    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU()).eval()


def seed_torchscript(root: Path) -> Path:
    import torch

    root.mkdir(parents=True, exist_ok=True)
    torch.jit.trace(_tiny_module(), torch.rand(1, 3, 6, 6)).save(str(root / "model.ts"))
    return root / "model.ts"


def seed_pt2(root: Path) -> Path:
    import torch

    root.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", max=8)
    program = torch.export.export(_tiny_module(), (torch.rand(2, 3, 6, 6),), dynamic_shapes=({0: batch},))
    torch.export.save(program, root / "model.pt2")
    return root / "model.pt2"


def load_torch_checked(path: Path) -> Any:
    from edgedl.converters.torch_files import load_torch_file

    return load_torch_file(path)


def _keras_model() -> Any:
    from edgedl.converters.keras_export import import_keras

    keras = import_keras()
    inputs = keras.Input((4, 4, 3), name="image")
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)))
    return keras.Model(inputs, outputs, name="tiny")


def seed_keras(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _keras_model().save(root / "model.keras")
    return root / "model.keras"


def seed_h5(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _keras_model().save(root / "model.h5")
    return root / "model.h5"


def load_keras_checked(path: Path) -> Any:
    """``load_keras_file``, with its HDF5 reader's time limit under the harness's, so a looping read is refused."""
    from edgedl.converters import keras_export

    keras_export.HDF5_READ_TIMEOUT_S = SOFT_LIMIT_S / 2
    return keras_export.load_keras_file(path)


@dataclass(frozen=True)
class Target:
    """A loader, the valid seed it starts from, and the mutations: name → (file relative to the seed, mutator)."""

    make_seed: Callable[[Path], Path]
    load: Callable[[Path], Any]
    mutations: dict[str, tuple[str, Mutator]]
    needs: str = ""  # an optional module the target needs ("torch", "keras")


def _on(file: str, mutators: dict[str, Mutator]) -> dict[str, tuple[str, Mutator]]:
    return {name: (file, mutator) for name, mutator in mutators.items()}


def _targets() -> dict[str, Target]:
    json_and_bytes = {**JSON_MUTATORS, **BYTE_MUTATORS}
    engine_mutations = {**{f"record:{k}": v for k, v in _on("RECORD", json_and_bytes).items()},
                        **{f"plan:{k}": v for k, v in _on("PLAN", BYTE_MUTATORS).items()}}
    return {
        "onnx": Target(seed_onnx, load_onnx_checked, _on(".", {**BYTE_MUTATORS, **ONNX_MUTATORS})),
        "onnx-external": Target(seed_onnx_external, load_onnx_checked, {
            **_on(".", {**BYTE_MUTATORS, **EXTERNAL_MUTATORS}), **{f"data:{k}": v for k, v in _on(
                "weights.data", BYTE_MUTATORS).items()}}),
        "manifest": Target(seed_bundle, open_bundle_checked, _on("edgedl.json", json_and_bytes)),
        "bundle-model": Target(seed_shipped_bundle, open_shipped_bundle, _on("model.onnx", {**BYTE_MUTATORS,
                                                                                          **ONNX_MUTATORS})),
        "calibration-cache": Target(seed_cache, read_cache_checked, _on(".", {**CACHE_MUTATORS, **BYTE_MUTATORS})),
        "engine-record": Target(seed_engine, load_engine_checked, engine_mutations),
        "torch-pickle": Target(seed_torch_pickle, load_torch_checked, {
            **_on(".", BYTE_MUTATORS), "member:data.pkl": (".", zip_member("data.pkl", BYTE_MUTATORS))}, "torch"),
        "torch-legacy": Target(seed_torch_legacy, load_torch_checked, _on(".", BYTE_MUTATORS), "torch"),
        "torchscript": Target(seed_torchscript, load_torch_checked, {
            **_on(".", BYTE_MUTATORS), "member:code": (".", zip_member(".py", BYTE_MUTATORS)),
            "member:data.pkl": (".", zip_member("data.pkl", BYTE_MUTATORS))}, "torch"),
        "pt2": Target(seed_pt2, load_torch_checked, {
            **_on(".", BYTE_MUTATORS), "member:model-json": (".", zip_member("model.json", JSON_MUTATORS)),
            "member:weights": (".", zip_member("weight_0", BYTE_MUTATORS))}, "torch"),
        "keras": Target(seed_keras, load_keras_checked, {
            **_on(".", BYTE_MUTATORS), "member:config": (".", zip_member("config.json", JSON_MUTATORS)),
            "member:weights": (".", zip_member("model.weights.h5", BYTE_MUTATORS))}, "keras"),
        "keras-h5": Target(seed_h5, load_keras_checked, _on(".", BYTE_MUTATORS), "keras"),
    }


TARGETS = _targets()


def resolve(seed: Path, file: str) -> Path:
    """The file a mutation rewrites: ``.`` is the seed itself, RECORD/PLAN the engine cache's pair."""
    if file == ".":
        return seed
    if file in ("RECORD", "PLAN"):
        return seed / _engine_file(".json" if file == "RECORD" else ".plan")
    return (seed if seed.is_dir() else seed.parent) / file


def copy_seed(seed_root: Path, seed: Path, work: Path) -> Path:
    """Copy the seed's folder to ``work``, links, FIFOs and hard links as they are; return the copied seed."""
    shutil.copytree(seed_root, work, symlinks=True, copy_function=_copy_keep_specials)
    return work / seed.relative_to(seed_root)


def mutate_copy(seed_root: Path, seed: Path, work: Path, mutation: str, target: Target, rng: random.Random) -> Path:
    """Copy the seed's folder to ``work`` and apply ``mutation``; return the path to load."""
    copied = copy_seed(seed_root, seed, work)
    file, mutator = target.mutations[mutation]
    victim = resolve(copied, file)
    victim.write_bytes(mutator(victim.read_bytes(), rng))
    return copied


def _copy_keep_specials(source: str, destination: str) -> None:
    """copytree's copy function: a FIFO stays a FIFO, a hard link to the secret a hard link, a sparse file sparse."""
    import stat

    info = os.lstat(source)
    if stat.S_ISFIFO(info.st_mode):
        os.mkfifo(destination)
    elif info.st_nlink > 1:
        os.link(source, destination)
    elif info.st_blocks * 512 < info.st_size // 2:  # nearly all holes: copying would write every zero
        with open(destination, "wb") as fh:
            fh.truncate(info.st_size)
    else:
        shutil.copy2(source, destination)


def available(target: Target) -> bool:
    """Whether the target's optional framework is installed (keras runs on torch here)."""
    if not target.needs:
        return True
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", target.needs))


# ---------------------------------------------------------------------------------------------- pathological files

def _huge_tensor(path: Path) -> None:
    """An initializer that claims 2**50 floats and holds 216 bytes."""
    import onnx

    model = onnx.ModelProto.FromString(path.read_bytes())
    del model.graph.initializer[0].dims[:]
    model.graph.initializer[0].dims.extend([1 << 20, 1 << 20, 1 << 10])
    path.write_bytes(model.SerializeToString())


def _huge_field(path: Path) -> None:
    """A graph field whose length prefix claims 2 GiB."""
    path.write_bytes(path.read_bytes() + b"\x3a\xff\xff\xff\xff\x07" + bytes(16))


def _huge_external(path: Path) -> None:
    """Every weight read from a 3 GiB (sparse) file beside the model, to its end: 216 bytes are needed."""
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        del tensor.external_data[:]
        tensor.external_data.add(key="location", value="big.data")
    path.write_bytes(model.SerializeToString())
    with open(path.parent / "big.data", "wb") as fh:
        fh.truncate(3 << 30)


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _sparse_gib(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)


def _zip_bomb(member: str, size: int) -> Callable[[Path], None]:
    """Replace the file with a zip whose ``member`` inflates to ``size`` zero bytes (about 1000:1)."""

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(member, "w") as fh:
            for _ in range(size >> 20):
                fh.write(bytes(1 << 20))

    return write


#: Files built to make a loader hang or allocate without bound: name -> (target, file to change, change).
PATHOLOGICAL: dict[str, tuple[str, str, Callable[[Path], None]]] = {
    "onnx tensor claiming 2**50 floats": ("onnx", ".", _huge_tensor),
    "onnx field claiming 2 GiB": ("onnx", ".", _huge_field),
    "onnx external data: a 3 GiB file": ("onnx-external", ".", _huge_external),
    "onnx model is /dev/zero": ("onnx", ".", _dev_zero),
    "manifest is /dev/zero": ("manifest", "edgedl.json", _dev_zero),
    "manifest of 1 GiB": ("manifest", "edgedl.json", _sparse_gib),
    "calibration cache is /dev/zero": ("calibration-cache", ".", _dev_zero),
    "calibration cache of 1 GiB": ("calibration-cache", ".", _sparse_gib),
    "engine record is /dev/zero": ("engine-record", "RECORD", _dev_zero),
    "engine plan is /dev/zero": ("engine-record", "PLAN", _dev_zero),
    "keras config.json zip bomb": ("keras", ".", _zip_bomb("config.json", 80 << 20)),
    "pt2 model.json zip bomb": ("pt2", ".", _zip_bomb("model/models/model.json", 80 << 20)),
}


def pathological(names: list[str]) -> int:
    """Run the PATHOLOGICAL cases of ``names`` under the memory cap: one JSON line each, with the peak RSS growth.

    The keras and pt2 bombs replace the whole seed, so they need only the framework the loader imports.
    """
    import resource

    _quiet()
    with tempfile.TemporaryDirectory(prefix="edgedl-fuzz-") as tmp:
        seeds, cases = Seeds(Path(tmp)), {}
        for case_name, (name, file, change) in PATHOLOGICAL.items():
            if name not in names:
                continue
            if name in ("keras", "pt2"):  # no need to build a real model: the bomb replaces it
                path = Path(tmp) / case_name.replace(" ", "-") / ("model.keras" if name == "keras" else "model.pt2")
                path.parent.mkdir()
                path.touch()
            else:
                path = copy_seed(*seeds.get(name), Path(tmp) / case_name.replace(" ", "-"))
            change(resolve(path, file))
            cases[case_name] = (TARGETS[name].load, path)
        if "pt2" in names:  # import the framework now, so its own memory is not counted against a case
            from edgedl.converters.torch_files import import_torch

            import_torch()
        _limit_memory()
        failed = 0
        for case_name, (load, path) in cases.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.monotonic()
            try:
                outcome = check_contract(load, path)
            except ContractViolation as exc:
                outcome, failed = f"FAIL {exc}", failed + 1
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
            print(json.dumps({"case": case_name, "outcome": outcome, "peak_growth_mib": round(grown, 1),
                              "seconds": round(time.monotonic() - started, 3)}), flush=True)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------- the harness

def case(name: str, seed: int, index: int) -> tuple[str, random.Random]:
    """The mutation and the random source of case ``index``: the same for the same (target, seed, index)."""
    rng = random.Random(f"{name}:{seed}:{index}")
    return rng.choice(sorted(TARGETS[name].mutations)), rng


class Seeds:
    """Seed files built once per process, in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[str, tuple[Path, Path]] = {}

    def get(self, name: str) -> tuple[Path, Path]:
        """(seed folder, seed path) of a target."""
        if name not in self.built:
            folder = self.root / "seeds" / name
            self.built[name] = folder, TARGETS[name].make_seed(folder)
        return self.built[name]


def run_case(seeds: Seeds, name: str, seed: int, index: int, keep: Path | None = None) -> str:
    """One case in a fresh folder, removed after: the outcome, or ContractViolation.

    A failing case's folder is copied into ``keep`` first (when given), to be loaded again with ``--load``.
    """
    mutation, rng = case(name, seed, index)
    seed_root, seed_path = seeds.get(name)
    work = seeds.root / "cases" / f"{name}-{index}"
    try:
        path = mutate_copy(seed_root, seed_path, work, mutation, TARGETS[name], rng)
        return check_contract(TARGETS[name].load, path)
    except ContractViolation:
        if keep is not None:
            save_case(work, keep)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def save_case(work: Path, keep: Path) -> Path:
    """Copy a case folder (links, FIFOs and hard links as they are) into ``keep``."""
    keep.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(work, keep / work.name, symlinks=True, copy_function=_copy_keep_specials,
                                dirs_exist_ok=True))


def _limit_memory() -> None:
    """Cap the address space at what the process holds now plus MEMORY_LIMIT_BYTES."""
    import resource

    with open("/proc/self/status", encoding="ascii") as fh:
        held = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (held + MEMORY_LIMIT_BYTES, resource.RLIM_INFINITY))


def _quiet() -> None:
    """Silence the warnings thousands of expected refusals log (a rebuilt engine, a refused pickle)."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def worker(start: dict[str, int], seed: int, stop_at: float, workdir: Path, keep: Path) -> None:
    """Run each target's cases from its ``start`` index until the wall clock passes ``stop_at``.

    The target that has had the least time so far goes next, so a cheap loader gets as much time as an
    expensive one rather than as many cases. Prints ``START name i`` before a case and ``DONE``/``FAIL``
    after it, for the parent to follow.
    """
    _quiet()
    seeds = Seeds(workdir)
    for name in start:  # build seeds (and import frameworks) before the memory cap
        seeds.get(name)
    _limit_memory()
    spent = dict.fromkeys(start, 0.0)
    while time.time() < stop_at:
        name = min(spent, key=spent.__getitem__)
        index, mutation = start[name], case(name, seed, start[name])[0]
        began = time.monotonic()
        print(f"START {name} {index}", flush=True)
        try:
            print(f"DONE {name} {index} {mutation} {run_case(seeds, name, seed, index, keep)}", flush=True)
        except ContractViolation as exc:
            print(f"FAIL {name} {index} {mutation} {str(exc)[:400]!r}", flush=True)
        spent[name] += time.monotonic() - began
        start[name] += 1


def _death(stderr: str) -> str:
    """What killed a worker, from what it left on stderr: faulthandler's first line, or the last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    found = [line for line in lines if line.startswith(("Fatal Python error", "Timeout ("))]
    return (found or lines[-1:] or ["no output"])[0].strip()


class Tally:
    """Cases tried and outcomes per target, and the failures, printed as the run goes."""

    def __init__(self, names: list[str], seed: int, keep: Path) -> None:
        self.started = self.reported = time.time()
        self.seed, self.keep = seed, keep
        self.tried = dict.fromkeys(names, 0)
        self.outcomes: dict[str, dict[str, int]] = {n: {} for n in names}
        self.failures: list[str] = []

    def done(self, name: str, outcome: str) -> None:
        self.tried[name] += 1
        self.outcomes[name][outcome] = self.outcomes[name].get(outcome, 0) + 1
        if time.time() - self.reported > 30:
            self.reported = time.time()
            print(f"{self.reported - self.started:6.0f}s  {sum(self.tried.values())} cases, "
                  f"{len(self.failures)} failures", flush=True)

    def fail(self, name: str, index: int, detail: str) -> None:
        self.tried[name] += 1
        saved = self.keep / f"{name}-{index}"
        where = f"; saved in {saved}" if saved.exists() else ""
        self.failures.append(f"{name}:{self.seed}:{index} ({case(name, self.seed, index)[0]}): {detail}{where}")
        print(f"FAILURE {self.failures[-1]}", flush=True)

    def summary(self) -> int:
        print(f"\n{sum(self.tried.values())} cases in {time.time() - self.started:.0f} s (seed {self.seed}); per target:")
        for name, count in self.tried.items():
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes[name].items()))
            print(f"  {name:18s} {count:6d}  {kinds}")
        print(f"failures: {len(self.failures)}")
        for failure in self.failures:
            print(f"  {failure}")
        return 1 if self.failures else 0


def fuzz(names: list[str], seed: int, minutes: float, keep: Path) -> int:
    """Run workers until ``minutes`` pass, restarting one that dies; print counts and failures. 1 on failure."""
    tally = Tally(names, seed, keep)
    stop_at = tally.started + minutes * 60
    following = dict.fromkeys(names, 0)  # each target's next case
    while time.time() < stop_at:
        with tempfile.TemporaryDirectory(prefix="edgedl-fuzz-") as workdir, tempfile.TemporaryFile("w+") as errors:
            command = [sys.executable, __file__, "--worker", ",".join(f"{n}={i}" for n, i in following.items()),
                       "--seed", str(seed), "--stop-at", str(stop_at), "--workdir", workdir, "--keep", str(keep)]
            running = None
            # stderr to a file: a pipe nobody reads would fill up and stall the worker
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True) as child:
                for line in child.stdout or ():
                    kind, _, rest = line.rstrip("\n").partition(" ")
                    if kind == "START":
                        name, number = rest.split(" ")
                        running = name, int(number)
                    elif kind in ("DONE", "FAIL"):
                        name, number, _, detail = rest.split(" ", 3)
                        running, following[name] = None, int(number) + 1
                        tally.done(name, detail) if kind == "DONE" else tally.fail(name, int(number), detail)
            errors.seek(0)
            stderr = errors.read()
            if running is not None:  # the worker died inside a case: a crash, a hard hang, or memory
                name, number = running
                case_dir = Path(workdir) / "cases" / f"{name}-{number}"
                if case_dir.exists():
                    save_case(case_dir, keep)
                tally.fail(name, number, f"worker died ({child.returncode}): {_death(stderr)}")
                following[name] = number + 1
            elif child.returncode != 0:
                print(stderr, file=sys.stderr)
                return 2
    return tally.summary()


def replay(spec: str) -> None:
    """Run one case again in this process (memory capped as in a worker), letting its exception through."""
    name, seed, index = spec.split(":")
    mutation, rng = case(name, int(seed), int(index))
    print(f"{name} case {index} (seed {seed}): {mutation}")
    with tempfile.TemporaryDirectory(prefix="edgedl-fuzz-") as tmp:
        seed_root, seed_path = Seeds(Path(tmp)).get(name)
        _limit_memory()
        path = mutate_copy(seed_root, seed_path, Path(tmp) / "case", mutation, TARGETS[name], rng)
        print(repr(TARGETS[name].load(path))[:300])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="how long to fuzz [2]")
    parser.add_argument("--targets", help=f"comma-separated, of: {', '.join(TARGETS)} [all installed]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the case sequence [0]")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"), help="where failing cases are saved")
    parser.add_argument("--replay", metavar="TARGET:SEED:INDEX", help="run one case again here, with its traceback")
    parser.add_argument("--load", nargs=2, metavar=("TARGET", "PATH"), help="run TARGET's loader on a saved case")
    parser.add_argument("--pathological", action="store_true",
                        help="run the hand-made hang and allocation cases under the memory cap, then stop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay:
        replay(args.replay)
    elif args.load:
        print(repr(TARGETS[args.load[0]].load(Path(args.load[1])))[:300])
    elif args.pathological:
        names = args.targets.split(",") if args.targets else [n for n, t in TARGETS.items() if available(t)]
        return pathological(names)
    elif args.worker:
        start = {name: int(index) for name, index in (item.split("=") for item in args.worker.split(","))}
        worker(start, args.seed, args.stop_at, args.workdir, args.keep)
    else:
        names = args.targets.split(",") if args.targets else [n for n, t in TARGETS.items() if available(t)]
        unknown = [n for n in names if n not in TARGETS]
        if unknown:
            parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
        skipped = [n for n in TARGETS if n not in names and not available(TARGETS[n])]
        if skipped:
            print(f"skipping {', '.join(skipped)} (torch or keras not installed)")
        return fuzz(names, args.seed, args.minutes, args.keep.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
