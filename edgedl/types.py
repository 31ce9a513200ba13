"""Type aliases shared across edgedl."""

from __future__ import annotations

import numpy as np

#: One model run's inputs (or outputs): tensor name → array.
Sample = dict[str, np.ndarray]
