"""Postprocessors by name: the built-ins register here, and so does a user's own in one function.

    @edgedl.postprocess.register("count")
    def count(outputs, ctx):
        return Prediction(outputs={"count": (outputs["scores"] > ctx.conf_threshold).sum()})

    model.stream("csi://0", postprocess="count")
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgedl.errors import UsageError
from edgedl.postprocess.base import PostContext
from edgedl.results import Prediction

#: One frame's outputs (name → array, batch of one) and its context → what the frame shows.
Postprocessor = Callable[[dict[str, np.ndarray], PostContext], Prediction]

_REGISTRY: dict[str, Postprocessor] = {}


def register(name: str, *, replace: bool = False) -> Callable[[Postprocessor], Postprocessor]:
    """Decorator: make ``fn(outputs, ctx) -> Prediction`` available as ``postprocess=name``.

    A name already taken is refused unless ``replace=True``, so a custom postprocessor never
    shadows a built-in by accident. The function itself is returned unchanged.
    """
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"a postprocessor name must be a non-empty string, got {name!r}")

    def add(fn: Postprocessor) -> Postprocessor:
        if not callable(fn):
            raise UsageError(f"postprocessor {name!r} must be a function fn(outputs, ctx) -> Prediction, got {fn!r}")
        if name in _REGISTRY and not replace:
            raise UsageError(f"a postprocessor named {name!r} is already registered",
                             fix=f'pick another name, or use @register("{name}", replace=True) to replace it')
        _REGISTRY[name] = fn
        return fn

    return add


def get(name: str) -> Postprocessor:
    """The postprocessor registered as ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown postprocessor {name!r}",
                         fix=f'use one of {", ".join(names())}, or add your own with '
                             f'@edgedl.postprocess.register("{name}")') from None


def names() -> list[str]:
    """The registered postprocessor names, sorted."""
    return sorted(_REGISTRY)
