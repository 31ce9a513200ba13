"""What every ``edgedl`` command shares: one-line errors with exit codes, the --verbose option, choices."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from edgedl.errors import EdgeDLError, OutputError, UsageError
from edgedl.vocabulary import AUTO, BACKENDS, PRECISIONS

#: The --backend and --precision choices of every command that loads a model.
BACKEND_CHOICES = (AUTO, *BACKENDS)
PRECISION_CHOICES = (AUTO, *PRECISIONS)


def choice(vocabulary: Iterable[str]) -> click.Choice:
    """An option's choices from one of edgedl's vocabularies, in any case; the value passed on is spelt as there."""
    return click.Choice(list(vocabulary), case_sensitive=False)


def _fail(exc: BaseException, verbose: bool, code: int) -> None:
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"edgedl: error: {exc}", err=True)
    sys.exit(code)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """One line and the error's exit code for user errors; a traceback only with --verbose."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose"))
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="edgedl: %(levelname)s: %(message)s", stream=sys.stderr, force=True)
        try:
            return command(*args, **kwargs)
        except EdgeDLError as exc:
            _fail(exc, verbose, exc.exit_code)
        except KeyboardInterrupt:
            click.echo("edgedl: interrupted; no output was left half-written", err=True)
            sys.exit(130)

    return wrapper


verbose_option = click.option("--verbose", "-v", is_flag=True, help="Log each step; show tracebacks on errors.")


def parse_shape(text: str, option: str = "--input-shape") -> tuple[str, list[int]]:
    """``NAME=1x3x224x224`` → (``NAME``, [1, 3, 224, 224]); errors name ``option``."""
    name, sep, dims = text.rpartition("=")
    try:
        if not sep or not name:
            raise ValueError
        shape = [int(d) for d in dims.lower().split("x")]
        if any(d <= 0 for d in shape):
            raise ValueError
    except ValueError:
        raise UsageError(f"{option} {text!r} is not NAME=DxDxD…", fix=f"write it like {option} images=1x3x224x224") from None
    return name, shape


def split_name(text: str) -> tuple[str, str]:
    """``door=rtsp://…`` → (``door``, ``rtsp://…``); a source without a name is named by itself. Only a plain word
    before the first ``=`` is a name, so URIs with ``=`` in their query stay whole."""
    name, sep, uri = text.partition("=")
    if sep and name and uri and all(c.isalnum() or c in "-_." for c in name):
        return name, uri
    return text, text


def check_output_file(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written before anything runs, so a long run is not lost at the end."""
    if path is None:
        return
    from edgedl.fsutil import writable_problem

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{option} names a folder", path=path, fix=f"give {option} a file name")
    if not parent.is_dir():
        raise OutputError(f"the folder for {option} does not exist", path=parent, fix="create it or choose another path")
    problem = writable_problem(parent)
    if problem is not None:
        raise OutputError(f"the folder for {option} is not writable ({problem})", path=parent,
                          fix="choose a writable path")


def write_output_file(path: Path, data: bytes) -> None:
    """Write ``path`` atomically and say so on stderr; a disk that refuses it is a one-line :class:`OutputError`."""
    from edgedl.fsutil import atomic_write_bytes, write_failure

    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise write_failure(exc, path, "free space on that disk or choose another path") from exc
    click.echo(f"wrote {path}", err=True)


def check_output_folder(path: Path, option: str) -> None:
    """Create the folder ``option`` names (and its parents), or refuse it with a one-line :class:`OutputError`."""
    from edgedl.fsutil import writable_problem

    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} names a file, not a folder", path=path, fix=f"give {option} a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder for {option} ({exc.strerror or exc})", path=path,
                          fix="choose a writable path") from exc
    problem = writable_problem(path)
    if problem is not None:
        raise OutputError(f"the folder for {option} is not writable ({problem})", path=path, fix="choose a writable path")
