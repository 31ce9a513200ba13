"""Open PyTorch model files without running code from them.

Three kinds of file can hold a convertible model: a ``torch.export`` program (``.pt2``, checked by
:mod:`pt2_guard` before torch reads it), a TorchScript archive (``.ts``, or ``.pt``/``.pth`` that
contain one; TorchScript's own loader reads only tensors and TorchScript code, never Python pickles)
and nothing else. A pickled ``.pt``/``.pth`` is read with ``torch.load(weights_only=True)`` only, so
a pickle that would build arbitrary objects is refused before any of it runs; what does load is at
best a state dict, which holds weights but not the code of the module.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedl.errors import InputFileError, MissingDependencyError, UnsafeFileError
from edgedl.loading.model_file import check_model_file, is_zip
from edgedl.loading.onnx_load import first_line

TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".ts")
MIN_TORCH = (2, 10)  # weights_only default from 2.6 (CVE-2025-32434), unpickler memory fix in 2.10
_STATE_DICT_FIX = ("build the module in Python, call module.load_state_dict(torch.load(path, weights_only=True)), "
                   "then edgedl.convert(module, example_inputs=...)")


def import_torch() -> Any:
    """``torch``, or :class:`MissingDependencyError` naming the extra to install."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("converting a PyTorch model needs torch", fix='pip install "edgedl[torch]"') from None
    version = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    if version < MIN_TORCH:
        raise MissingDependencyError(f"torch {torch.__version__} is too old to load model files safely",
                                     fix='pip install "edgedl[torch]" (torch 2.10 or newer)')
    return torch


@dataclass
class TorchProgram:
    """A model read from a file: what it is, the program, and example inputs where the file has them."""

    kind: str  # "torch.export" or "torchscript"
    program: Any
    input_names: list[str]
    example_inputs: tuple[Any, ...] | None = None
    notes: list[str] = field(default_factory=list)


def load_torch_file(path: Path) -> TorchProgram:
    """Read a ``.pt2``, TorchScript or pickled file; refuse anything that would need unsafe loading."""
    torch = import_torch()
    check_model_file(path, "a PyTorch file", "pass the model file itself")
    suffix = path.suffix.lower()
    kind = _sniff(path)
    if suffix == ".pt2" and kind != "torch.export" or suffix == ".ts" and kind != "torchscript":
        what = {"torch.export": "a torch.export program", "torchscript": "a TorchScript archive",
                "pickle": "a pickled checkpoint"}.get(kind, "not a PyTorch file")
        expected = "torch.export program" if suffix == ".pt2" else "TorchScript archive"
        raise InputFileError(f"is {what}, not a {expected} as its suffix says", path=path,
                             fix="save it again with torch.export.save (.pt2) or torch.jit.save (.ts)")
    if kind == "torch.export":
        return _load_exported(torch, path)
    if kind == "torchscript":
        return _load_torchscript(torch, path)
    raise _pickle_refusal(torch, path)


def _sniff(path: Path) -> str:
    """What a PyTorch file holds, from its zip listing (never by unpickling)."""
    if not is_zip(path):
        return "pickle"  # legacy torch.save format or a bare pickle; the weights-only loader decides
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except Exception:  # BadZipFile, UnicodeDecodeError (a name flagged UTF-8 that is not), EOFError, ...
        return "unknown"
    if any(re.fullmatch(r"[^/]+/models/[^/]+\.json", n) for n in names):
        return "torch.export"
    if any(re.fullmatch(r"[^/]+/code/.+\.py", n) for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") for n in names):
        return "pickle"
    return "unknown"


def _load_exported(torch: Any, path: Path) -> TorchProgram:
    from edgedl.converters.pt2_guard import check_pt2_archive, weights_only_loading

    check_pt2_archive(path)
    try:
        with weights_only_loading(torch):
            program = torch.export.load(str(path))
    except UnsafeFileError as exc:
        raise UnsafeFileError(exc.problem, path=path, fix=exc.fix) from None
    except Exception as exc:  # version skew, corrupt archive, unknown custom op
        raise InputFileError(f"cannot be loaded as a torch.export program ({first_line(exc)})", path=path,
                             fix="export it again with this torch version (torch.export programs are not "
                                 "portable across releases)") from None
    names = [spec.arg.name for spec in program.graph_signature.input_specs
             if spec.kind.name == "USER_INPUT" and hasattr(spec.arg, "name")]
    example = None
    if program.example_inputs is not None:
        args, kwargs = program.example_inputs
        if not kwargs and all(isinstance(a, torch.Tensor) for a in args):
            example = tuple(args)
    return TorchProgram("torch.export", program, names, example)


def _load_torchscript(torch: Any, path: Path) -> TorchProgram:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise InputFileError(f"cannot be loaded as TorchScript ({first_line(exc)})", path=path,
                             fix="save it again with torch.jit.save") from None
    arguments = module.forward.schema.arguments[1:]  # the first is self
    return TorchProgram("torchscript", module, [a.name for a in arguments])


def _pickle_refusal(torch: Any, path: Path) -> InputFileError:
    """Weights-only load: either a refusal (the pickle wants code) or a state dict (no module to convert)."""
    import pickle

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"(GLOBAL [\w.]+|Unsupported operand \d+|Unsupported class [\w.]+)", str(exc))
        detail = f" ({found.group(1)})" if found else ""
        return UnsafeFileError(f"is a pickle that needs code to load{detail}; edgedl loads pickles with "
                              "weights_only=True only and never runs them", path=path,
                              fix="save the model with torch.export.save (.pt2) or torch.jit.save (.ts), "
                                  "or pass the module to edgedl.convert() in Python")
    except Exception as exc:  # truncated zip, wrong magic number, not a torch file at all
        return InputFileError(f"is not a PyTorch file ({first_line(exc)})", path=path,
                              fix="pass a .pt2 (torch.export), .ts (TorchScript) or .onnx model")
    tensors = _count_tensors(torch, loaded)
    return InputFileError(f"holds weights only ({tensors} tensors, a state dict or checkpoint), not a model; "
                         "the module's code is not in the file", path=path, fix=_STATE_DICT_FIX)


def _count_tensors(torch: Any, value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return 1
    if isinstance(value, dict):
        return sum(_count_tensors(torch, v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_count_tensors(torch, v) for v in value)
    return 0
