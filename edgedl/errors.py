"""The one exception hierarchy of edgedl.

Every error a user can cause derives from :class:`EdgeDLError` and carries the
exit code the CLI returns for it. Internal bugs are *not* ``EdgeDLError``: they
surface as ordinary exceptions with a traceback, because they are ours to fix.

A message is one line that names the file, the problem and the fix.
"""

from __future__ import annotations

from pathlib import Path


class EdgeDLError(Exception):
    """Base of every user-facing edgedl error."""

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.problem = message
        self.fix = fix
        parts = [f"{self.path}: {message}" if self.path is not None else message]
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" — ".join(parts))


class UsageError(EdgeDLError):
    """An option or argument the user passed makes no sense."""

    exit_code = 2


class InputFileError(EdgeDLError):
    """A model, data or label file is missing, unreadable or not what it claims to be."""

    exit_code = 3


class UnsafeFileError(InputFileError):
    """A file asks for something edgedl refuses to do (escape its folder, run code)."""

    exit_code = 4


class BundleError(EdgeDLError):
    """A bundle is missing pieces, altered, or from a schema this version does not know."""

    exit_code = 5


class CalibrationError(EdgeDLError):
    """Calibration data is missing, empty or does not fit the model."""

    exit_code = 6


class AccuracyGateError(EdgeDLError):
    """A quantized variant stayed below the accuracy gate even after repair."""

    exit_code = 7


class OutputError(EdgeDLError):
    """The output path exists, or cannot be written."""

    exit_code = 8


class MissingDependencyError(EdgeDLError):
    """An optional dependency needed for this request is not installed."""

    exit_code = 9


class DeviceError(EdgeDLError):
    """The GPU, its driver or an accelerator library failed while loading or running a model."""

    exit_code = 10
