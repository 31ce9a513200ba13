"""The inputs a profile feeds the model: random normal data shaped like the model's inputs, at the batch asked for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from edgedl.errors import UsageError
from edgedl.runtimes.base import TensorSpec, np_dtype
from edgedl.types import Sample, noise_samples


def resolve_shapes(inputs: Iterable[Any], batch: int | None = None,
                   shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for inputs with ``name`` and ``shape`` (ints, or names for dynamic dims).

    ``shapes`` (``--shape NAME=1x3xHxW``) fixes an input outright; ``batch`` sets the first
    dim of the others. A dynamic batch left open becomes 1; any other open dim needs ``--shape``,
    since guessing an image size would profile a model nobody runs.
    """
    shapes = dict(shapes or {})
    specs = list(inputs)
    names = [spec.name for spec in specs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise UsageError(f"--shape names {', '.join(map(repr, unknown))}, which is not an input of the model",
                         fix=f"the inputs are: {', '.join(names)}")
    resolved = {}
    for spec in specs:
        declared = list(spec.shape)
        wanted = shapes.get(spec.name)
        if wanted is not None:
            resolved[spec.name] = _fit(spec.name, declared, list(wanted), batch)
            continue
        dims = []
        for axis, dim in enumerate(declared):
            if axis == 0 and batch is not None:
                if isinstance(dim, int) and dim > 0 and dim != batch:
                    raise UsageError(f"input {spec.name!r} has a fixed batch of {dim}; --batch {batch} needs a dynamic batch",
                                     fix="convert with --dynamic-batch, or leave --batch out")
                dims.append(batch)
            elif isinstance(dim, int) and dim > 0:
                dims.append(dim)
            elif axis == 0:
                dims.append(1)
            else:
                raise UsageError(f"input {spec.name!r} has a dynamic dim {dim!r} at axis {axis}",
                                 fix=f"give its shape: --shape {spec.name}=" + "x".join(
                                     str(d) if isinstance(d, int) and d > 0 else "N" for d in declared))
        resolved[spec.name] = tuple(dims)
    return resolved


def _fit(name: str, declared: list[Any], wanted: list[int], batch: int | None) -> tuple[int, ...]:
    if len(wanted) != len(declared):
        raise UsageError(f"--shape {name}={'x'.join(map(str, wanted))} has {len(wanted)} dims; the input has {len(declared)}",
                         fix=f"the input is [{', '.join(map(str, declared))}]")
    for axis, (dim, size) in enumerate(zip(declared, wanted, strict=True)):
        if isinstance(dim, int) and dim > 0 and dim != size:
            raise UsageError(f"--shape {name}: axis {axis} is fixed at {dim} in the model, not {size}",
                             fix=f"the input is [{', '.join(map(str, declared))}]")
    if batch is not None and wanted[0] != batch:
        raise UsageError(f"--shape {name} sets batch {wanted[0]} but --batch is {batch}", fix="give the batch once")
    return tuple(wanted)


def profile_inputs(specs: Iterable[TensorSpec], shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> Sample:
    """One set of seeded random inputs (floats standard normal) at ``shapes``, with the dtypes the runtime expects."""
    concrete = [TensorSpec(spec.name, np_dtype(str(spec.dtype)), shapes[spec.name]) for spec in specs]
    return noise_samples(concrete, 1, seed)[0]
