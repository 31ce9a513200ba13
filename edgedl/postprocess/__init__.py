"""Postprocessing: one frame's model outputs → a :class:`edgedl.results.Prediction` in frame pixels.

A postprocessor is one function ``fn(outputs, ctx) -> Prediction``. Built-ins: ``classify``,
``yolov8``, ``yolov5``, ``ssd``, ``ssd-tf``, ``segment`` and ``raw``; :func:`choose` picks one from
the model's task and output shapes, and :func:`register` adds your own::

    @edgedl.postprocess.register("mine")
    def mine(outputs, ctx):
        ...

    model.stream(source, postprocess="mine")
"""

from __future__ import annotations

from edgedl.postprocess import classification, detection, raw, segmentation  # noqa: F401  (they register the built-ins)
from edgedl.postprocess.base import PostContext
from edgedl.postprocess.nms import nms
from edgedl.postprocess.registry import Postprocessor, get, names, register
from edgedl.postprocess.selection import choose

__all__ = ["PostContext", "Postprocessor", "choose", "get", "names", "nms", "register"]
