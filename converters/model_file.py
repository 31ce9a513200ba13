"""The checks every model file gets before any parser sees it."""

from __future__ import annotations

from pathlib import Path

from edgedl.errors import InputFileError

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


def check_model_file(path: Path, kind: str, folder_fix: str) -> bytes:
    """Refuse a missing path, a folder, an empty file or a Git LFS pointer; return the file's first bytes.

    ``kind`` names the expected file in messages ("an ONNX file"); ``folder_fix`` says what to pass instead
    of a folder.
    """
    if not path.exists():
        raise InputFileError("no such file", path=path, fix="check the path")
    if path.is_dir():
        raise InputFileError(f"is a folder, not {kind}", path=path, fix=folder_fix)
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
