"""edgedl: take a trained vision model to the edge.

Public API (heavy modules load lazily, so ``import edgedl`` stays fast)::

    bundle = edgedl.convert("model.onnx", int8=True)
    bundle = edgedl.Bundle.open("model.edgedl")
    model = edgedl.load("model.edgedl")          # fastest backend here; model(x) -> {name: array}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgedl.errors import EdgeDLError

__version__ = "0.1.0"
__all__ = ["Bundle", "EdgeDLError", "Model", "PreprocessSpec", "__version__", "convert", "load"]

if TYPE_CHECKING:
    from edgedl.bundle import Bundle
    from edgedl.conversion import convert
    from edgedl.model import Model, load
    from edgedl.preprocess import PreprocessSpec

_LAZY = {"Bundle": "edgedl.bundle", "convert": "edgedl.conversion", "PreprocessSpec": "edgedl.preprocess",
         "load": "edgedl.model", "Model": "edgedl.model"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgedl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
