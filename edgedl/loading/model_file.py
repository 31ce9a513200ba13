"""The checks every model file gets before any parser sees it, and a bounded read for small untrusted files."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from edgedl.errors import InputFileError

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


def check_model_file(path: Path, kind: str, folder_fix: str) -> bytes:
    """Refuse a missing path, a folder, a pipe or device, an empty file or a Git LFS pointer; return the first bytes.

    ``kind`` names the expected file in messages ("an ONNX file"); ``folder_fix`` says what to pass instead
    of a folder.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputFileError("no such file", path=path, fix="check the path") from None
    except OSError as exc:  # a name too long, a link loop, no permission on a parent folder
        raise InputFileError(f"cannot be read ({exc.strerror or exc})", path=path, fix="check the path") from None
    if stat.S_ISDIR(mode):
        raise InputFileError(f"is a folder, not {kind}", path=path, fix=folder_fix)
    if not stat.S_ISREG(mode):  # a FIFO blocks the first read forever; /dev/zero never ends
        raise InputFileError(f"is a pipe or device, not {kind}", path=path, fix="save the model to a file and pass that")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(LFS_POINTER_PREFIX))
    except OSError as exc:
        raise InputFileError(f"cannot be read ({exc.strerror})", path=path, fix="check its permissions") from None
    if not head:
        raise InputFileError("is empty", path=path, fix="export or download the model again")
    if head == LFS_POINTER_PREFIX:
        raise InputFileError("is a Git LFS pointer, not the model", path=path,
                             fix="run `git lfs pull` in its repository to fetch the real file")
    return head


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    A FIFO would block a plain read forever and ``/dev/zero`` never ends, so the file is opened
    without blocking and checked on the open descriptor before anything is read. Raises ``OSError``
    (missing, unreadable, not a regular file) or ``ValueError`` (more than ``limit`` bytes); ``exc.strerror``,
    or ``str(exc)`` where it has none, says which without repeating the path.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("a pipe or device, not a regular file")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit} bytes")
        data = fh.read(info.st_size + 1)  # one byte more than it had: a file still growing shows here
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def is_zip(path: Path) -> bool:
    """Whether ``path`` looks like a zip archive (``zipfile.is_zipfile`` lets BadZipFile through for some damage)."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        return False


def read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """Member ``name`` of an untrusted zip archive, at most ``limit`` bytes of it inflated.

    A zip bomb inflates a small member into gigabytes, and ``ZipFile.read`` inflates in one step as
    much as the compressed data gives, so the member is refused when it claims more than ``limit``
    and read in bounded steps otherwise (a member that lies about its size then fails its CRC).
    Raises KeyError (no such member), ValueError (too large, or a compression other than deflate)
    or what zipfile raises for a damaged archive.
    """
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise ValueError(f"{name} claims {info.file_size} bytes, more than the {limit} it may have")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # bz2/lzma inflate unbounded
        raise ValueError(f"{name} uses compression method {info.compress_type}, not deflate")
    with archive.open(info) as member:
        return member.read(limit)
