"""File-system helpers that never leave half-written results behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgedl.errors import OutputError


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_dir(target: Path, force: bool) -> None:
    """Refuse to overwrite ``target`` without ``force``; refuse unwritable parents."""
    parent = target.parent
    if target.exists() and not force:
        raise OutputError("output already exists", path=target, fix="pass --force to replace it or choose -o")
    if not parent.exists():
        raise OutputError("output folder's parent does not exist", path=parent, fix="create it or choose -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("output folder is not writable", path=parent, fix="choose a writable -o path")


@contextlib.contextmanager
def staged_dir(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; move it into place only on success.

    On any exception the temporary folder is removed and an existing ``target``
    is left exactly as it was.
    """
    target = Path(target)
    check_output_dir(target, force)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as exc:
        raise OutputError(f"cannot create output ({exc.strerror})", path=target.parent,
                          fix="choose a writable -o path") from None
    try:
        yield stage
        if target.exists():
            # Swap: move the old one aside first so a crash never leaves no bundle at all.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(stage, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
