"""File-system helpers that never leave half-written results behind.

Results are written beside their final path and renamed into place, so a reader sees the old
result or the new one, never part of one. A writer killed outright (SIGKILL, power loss) cannot
clean up after itself, so what it leaves is named so that the next writer of the same path can
find it and clean it: ``.NAME.*.tmp`` files and ``.NAME.*.partial`` working folders.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from edgedl.errors import OutputError

log = logging.getLogger("edgedl.fsutil")

#: errno values that mean the disk refused a write (full, over quota, over the file-size limit, read-only).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})
_TMP_SUFFIX = ".tmp"
_WORK_SUFFIX = ".partial"
_PREVIOUS = "previous"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_failure(exc: OSError, path: str | Path, fix: str) -> OutputError:
    """The one-line error for a write the operating system refused, naming ``path`` and why."""
    return OutputError(f"cannot write ({exc.strerror or exc})", path=path, fix=fix)


def fsync_dir(folder: str | Path) -> None:
    """Make new names in ``folder`` survive a power loss; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename itself is still atomic
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty ``.NAME.*.tmp`` beside ``path``, with the mode the umask gives (``mkstemp`` would make it 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{_TMP_SUFFIX}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (an ``OSError`` leaves no file behind)."""
    path = Path(path)
    fd, tmp = _create_temporary(path)
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
    fsync_dir(path.parent)


def partial_files(path: str | Path) -> list[Path]:
    """Temporary files :func:`atomic_write_bytes` left beside ``path`` when its process was killed.

    Only call this while no other process can be writing ``path`` (hold its lock): a live
    writer's temporary file looks the same.
    """
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*{_TMP_SUFFIX}"))


def writable_problem(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (tried for real: permissions lie to root), or None."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def check_output_dir(target: Path, force: bool, replace_only: str | None = None) -> None:
    """Refuse to overwrite ``target`` without ``force``; refuse a parent that cannot be written.

    With ``replace_only`` (a file name), ``force`` replaces an existing ``target`` only when it is a
    folder holding that file or an empty folder, so a slip in an output path cannot delete a folder
    of someone else's files.
    """
    parent = target.parent
    if target.exists() and not force:
        raise OutputError("output already exists", path=target, fix="pass --force to replace it or choose -o")
    if target.exists() and replace_only is not None and not (
            (target / replace_only).is_file() or (target.is_dir() and not any(target.iterdir()))):
        raise OutputError(f"output exists and is not what this command writes (no {replace_only}); --force "
                          "replaces only its own output", path=target, fix="choose another -o path")
    if not parent.exists():
        raise OutputError("output folder's parent does not exist", path=parent, fix="create it or choose -o")
    problem = writable_problem(parent)
    if problem is not None:
        raise OutputError(f"output folder is not writable ({problem})", path=parent, fix="choose a writable -o path")


def _try_lock(folder: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``folder``, or None when a live process holds it."""
    import fcntl

    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def recover_stale(target: str | Path) -> None:
    """Clean up after writers of ``target`` that were killed: put back a ``target`` a swap had moved aside.

    A working folder whose lock no process holds belongs to a dead writer. If that writer died
    between moving the old ``target`` aside and moving the new one in, the old one is restored;
    the rest (its unfinished output, its scratch files) is removed.
    """
    target = Path(target)
    for work in target.parent.glob(f".{glob.escape(target.name)}.*{_WORK_SUFFIX}"):
        fd = _try_lock(work) if work.is_dir() else None
        if fd is None:
            continue
        try:
            previous = work / _PREVIOUS
            if previous.is_dir() and not (target.exists() or target.is_symlink()):
                try:
                    os.replace(previous, target)
                except OSError as exc:  # keep the folder: it holds the only copy
                    log.warning("cannot restore %s from %s (%s)", target, previous, exc.strerror or exc)
                    continue
                log.warning("restored %s, which an interrupted write had moved aside", target)
            shutil.rmtree(work, ignore_errors=True)
        finally:
            os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk, so a rename after it never exposes empty files."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(folder)


def _install(stage: Path, target: Path, work: Path) -> None:
    """Move ``stage`` to ``target``; an existing ``target`` goes into ``work`` first and comes back if that fails."""
    previous = work / _PREVIOUS
    if target.exists() or target.is_symlink():
        os.replace(target, previous)
    try:
        os.replace(stage, target)
    except OSError:
        if previous.exists() or previous.is_symlink():
            os.replace(previous, target)
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def staged_dir(target: str | Path, force: bool = False, replace_only: str | None = None,
               fix: str = "free space on that disk or choose another -o path") -> Iterator[Path]:
    """Yield an empty folder to fill; it replaces ``target`` only when the block succeeds.

    The folder sits in a private working folder beside ``target`` (``.NAME.*.partial``), locked while
    this runs; the block may keep scratch files in that working folder (the yielded folder's parent),
    which goes away with it. On an exception an existing ``target`` is left exactly as it was, and a
    write the disk refused becomes an :class:`OutputError` ending in ``fix``. After a kill, the next
    call cleans up (see :func:`recover_stale`). ``force`` and ``replace_only`` are as in
    :func:`check_output_dir`.
    """
    target = Path(target)
    recover_stale(target)
    check_output_dir(target, force, replace_only)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_WORK_SUFFIX, dir=target.parent))
    except OSError as exc:
        raise write_failure(exc, target.parent, fix) from exc
    stage = work / target.name
    lock = _try_lock(work)
    try:
        try:
            if lock is None:  # only when another writer of the same output cleaned it up in the instant before
                raise OSError(errno.EBUSY, "another process removed the working folder")
            stage.mkdir()
        except OSError as exc:
            raise write_failure(exc, work, fix) from exc
        try:
            yield stage
        except OSError as exc:
            if exc.errno in WRITE_ERRNOS:
                raise write_failure(exc, target, fix) from exc
            raise
        log.info("moving %s into place", target)
        try:
            _fsync_tree(stage)
            _install(stage, target, work)
        except OSError as exc:
            raise write_failure(exc, target, fix) from exc
    finally:
        if target.exists() or not (work / _PREVIOUS).exists():  # else the old target is only there: next call restores it
            shutil.rmtree(work, ignore_errors=True)
        if lock is not None:
            os.close(lock)
