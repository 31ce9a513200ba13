"""Type aliases shared across edgedl, and the stand-in inputs built from them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

#: One model run's inputs (or outputs): tensor name → array.
Sample = dict[str, np.ndarray]


def noise_samples(inputs: Iterable[Any], count: int, seed: int) -> list[Sample]:
    """Seeded stand-in inputs for objects with ``name``, ``shape`` and ``dtype`` (dynamic dims become 1).

    Floats get standard normal noise, other types zeros. For timing and for checks when the user gave
    no data; never for calibration.
    """
    rng = np.random.default_rng(seed)
    specs = [(i.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape), np.dtype(i.dtype))
             for i in inputs]
    return [{name: rng.standard_normal(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
             for name, shape, dtype in specs} for _ in range(count)]
