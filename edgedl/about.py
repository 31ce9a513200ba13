"""What this edgedl is: its version, and where the data files that ship inside the package lie.

Modules that need either import this module, not the ``edgedl`` package, whose ``__init__``
loads the public API lazily and must not sit in the middle of import cycles.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

#: Shipped data: calibration photos (``calib/``) and the demo detector (``demo/``).
DATA_DIR = Path(__file__).resolve().parent / "data"
