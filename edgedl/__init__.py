"""edgedl: take a trained vision model to the edge.

Public API (heavy modules load lazily, so ``import edgedl`` stays fast)::

    bundle = edgedl.convert("model.onnx", int8=True)
    bundle = edgedl.Bundle.open("model.edgedl")
    model = edgedl.load("model.edgedl")          # fastest backend here; model(x) -> {name: array}
    for result in model.stream("csi://0"):       # camera → preprocess → model → postprocess, concurrently
        print(result.detections)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgedl.about import __version__
from edgedl.errors import EdgeDLError

__all__ = ["Bundle", "EdgeDLError", "Model", "Pipeline", "PreprocessSpec", "Result", "__version__", "convert", "load",
           "postprocess"]

if TYPE_CHECKING:
    from edgedl import postprocess
    from edgedl.bundle import Bundle
    from edgedl.conversion import convert
    from edgedl.model import Model, load
    from edgedl.pipeline import Pipeline
    from edgedl.preprocess import PreprocessSpec
    from edgedl.results import Result

_LAZY = {"Bundle": "edgedl.bundle", "convert": "edgedl.conversion", "PreprocessSpec": "edgedl.preprocess",
         "load": "edgedl.model", "Model": "edgedl.model", "Pipeline": "edgedl.pipeline", "Result": "edgedl.results",
         "postprocess": "edgedl.postprocess"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgedl' has no attribute {name!r}")
    import importlib

    imported = importlib.import_module(module)
    value = imported if module == f"edgedl.{name}" else getattr(imported, name)
    globals()[name] = value
    return value
