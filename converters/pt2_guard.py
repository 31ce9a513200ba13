"""Open a ``torch.export`` archive (``.pt2``) that nobody vouches for.

``torch.export.load`` trusts its file: weights and constants fall back to ``torch.load(weights_only=False)``
and plain ``pickle.loads``, symbolic shapes are parsed with ``sympy.sympify`` (which evaluates Python),
call targets are looked up by walking attributes from ``torch`` (``torch.os.system`` resolves), and
``guards_code`` is compiled and run. So before torch sees the file, every model JSON in the archive is
checked: targets must be operators (``torch.ops.aten.*``, ``prims``, higher-order ops) or a short list of
arithmetic helpers, shape expressions may use only symbols, numbers, operators and sympy's shape
functions, guards code must be empty, and custom or opaque objects are refused. While torch loads it,
``torch.load`` is forced to ``weights_only=True`` and the raw pickle paths refuse to run.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tokenize
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgedl.errors import InputFileError, UnsafeFileError
from edgedl.loading.model_file import read_member
from edgedl.loading.onnx_load import first_line

_OP_NAMESPACES = {"aten", "prims", "higher_order"}
_OPERATOR_TARGETS = {"getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
                     "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "invert"}
_MATH_TARGETS = {"ceil", "floor", "trunc", "sqrt"}
_SYM_TARGET = re.compile(r"torch\._?sym_[a-z_]+")
_IDENT = re.compile(r"_?[A-Za-z][A-Za-z0-9_]*")  # one leading underscore at most: no dunders
#: Names a shape expression may call or mention: sympy's constructors and torch's shape functions.
_EXPR_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "Max", "Min", "Abs", "Mod", "floor", "ceiling", "sqrt", "Eq", "Ne",
    "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "Piecewise", "oo", "zoo", "nan", "true", "false", "True", "False",
    "None", "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "infinite",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "TruncToFloat", "TruncToInt",
    "RoundToInt", "RoundDecimal", "ToFloat", "Identity", "IsNonOverlappingAndDenseIndicator",
    "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "OpaqueUnaryFn_sqrt", "OpaqueUnaryFn_exp", "OpaqueUnaryFn_log",
}
_SYMBOL_NAME = re.compile(r"[a-z]+[0-9]+")
_EXPR_OPS = {"+", "-", "*", "/", "//", "%", "**", "(", ")", ",", "=", "<", ">", "<=", ">=", "==", "!=", "&", "|", "~"}
MODEL_JSON_LIMIT = 64 << 20  # a vision model's graph is a few MB of JSON
_REFUSE_FIX = "export the model again with torch.export and torch.export.save from a trusted environment"


def check_pt2_archive(path: Path) -> None:
    """Refuse a ``.pt2`` file that is not a plain ``torch.export`` archive of operator calls."""
    try:
        archive = zipfile.ZipFile(path)
    except Exception:  # BadZipFile, UnicodeDecodeError (a name flagged UTF-8 that is not), EOFError, ...
        raise InputFileError("is not a torch.export program (not a .pt2 zip archive)", path=path,
                             fix="save the program with torch.export.save(program, 'model.pt2')") from None
    with archive:
        names = archive.namelist()
        models = [n for n in names if re.fullmatch(r"[^/]+/models/[^/]+\.json", n)]
        if not models:
            kind = "a TorchScript archive" if any("/code/" in n for n in names) else "not a torch.export archive"
            raise InputFileError(f"is {kind}, not a torch.export program", path=path,
                                 fix="pass TorchScript as .ts, or save with torch.export.save(program, 'model.pt2')")
        for name in names:
            if re.search(r"/data/constants/(custom_obj|opaque_obj)", name):
                raise UnsafeFileError(f"holds a pickled custom object ({name.rsplit('/', 1)[-1]})", path=path,
                                      fix="export a model whose constants are plain tensors")
        for name in models:
            try:
                document = json.loads(read_member(archive, name, MODEL_JSON_LIMIT))
            except Exception as exc:  # a damaged member or JSON, too large, nested deeper than Python's stack
                raise InputFileError(f"{name} cannot be read ({first_line(exc)})", path=path, fix=_REFUSE_FIX) from None
            _check_document(document, path)


def _check_document(document: Any, path: Path) -> None:
    if not isinstance(document, dict):
        raise InputFileError("model JSON is not an object", path=path, fix=_REFUSE_FIX)
    if document.get("guards_code"):
        raise UnsafeFileError("carries guard code that torch would compile and run", path=path, fix=_REFUSE_FIX)
    constraints = document.get("range_constraints") or {}
    if not isinstance(constraints, dict):
        raise InputFileError("model JSON has malformed range_constraints", path=path, fix=_REFUSE_FIX)
    for key in constraints:
        _check_expression(str(key), path)
    for key, value in _walk(document):
        if key == "target" and isinstance(value, str):
            _check_target(value, path)
        elif key == "expr_str" and isinstance(value, str):
            _check_expression(value, path)
        elif key in ("as_custom_obj", "as_opaque_obj") and value is not None:
            raise UnsafeFileError("passes a custom object to the graph", path=path, fix=_REFUSE_FIX)


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                yield str(key), child
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _check_target(target: str, path: Path) -> None:
    parts = target.split(".")
    ok = all(_IDENT.fullmatch(p) for p in parts[1:])
    if parts[0] == "torch" and len(parts) in (4, 5) and parts[1] == "ops":  # ops.ns.op[.overload]
        ok = ok and parts[2] in _OP_NAMESPACES
    elif parts[0] == "_operator":
        ok = ok and len(parts) == 2 and parts[1] in _OPERATOR_TARGETS
    elif parts[0] == "math":
        ok = ok and len(parts) == 2 and parts[1] in _MATH_TARGETS
    else:
        ok = ok and _SYM_TARGET.fullmatch(target) is not None
    if not ok:
        raise UnsafeFileError(f"calls {target[:80]!r}, which is not a PyTorch operator", path=path,
                              fix="export models that use only built-in aten operators")


def _check_expression(text: str, path: Path) -> None:
    """Shape expressions reach ``sympy.sympify`` (Python eval): allow symbols, numbers and shape functions only."""
    refuse = UnsafeFileError(f"has a shape expression that is not plain arithmetic: {text[:80]!r}", path=path,
                             fix=_REFUSE_FIX)
    if len(text) > 2000:
        raise refuse
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        raise refuse from None
    for token in tokens:
        kind, value = token.type, token.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER) or kind == tokenize.NUMBER:
            continue
        if kind == tokenize.NAME and (value in _EXPR_NAMES or _SYMBOL_NAME.fullmatch(value)):
            continue
        if kind == tokenize.STRING and re.fullmatch(r"'[a-z]+[0-9]+'|\"[a-z]+[0-9]+\"", value):
            continue
        if kind == tokenize.OP and value in _EXPR_OPS:
            continue
        raise refuse


class _RefusedPickle:
    """Stands in for ``pickle`` inside torch's archive reader: raw pickles never load."""

    @staticmethod
    def loads(*_: Any, **__: Any) -> Any:
        raise UnsafeFileError("holds a raw pickle", fix=_REFUSE_FIX)


@contextlib.contextmanager
def weights_only_loading(torch: Any) -> Iterator[None]:
    """While active, every ``torch.load`` is ``weights_only=True`` and raw pickle loads in the archive reader fail."""
    original_load = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original_load(*args, **kwargs)

    def refuse_object(*_: Any, **__: Any) -> Any:
        raise UnsafeFileError("holds a pickled TorchScript object", fix=_REFUSE_FIX)

    package = _archive_module()
    saved = [(torch, "load", original_load), (torch._C, "_pickle_load_obj", torch._C._pickle_load_obj)]
    if package is not None:
        saved.append((package, "pickle", package.pickle))
    torch.load = safe_load
    torch._C._pickle_load_obj = refuse_object
    if package is not None:
        package.pickle = _RefusedPickle
    try:
        yield
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)


def _archive_module() -> Any:
    try:
        from torch.export.pt2_archive import _package
    except ImportError:  # older layouts read weights through torch.load only
        return None
    return _package if hasattr(_package, "pickle") else None
