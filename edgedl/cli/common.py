"""What every ``edgedl`` command shares: one-line errors with exit codes, and the --verbose option."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from edgedl.errors import EdgeDLError, UsageError

#: The --backend choices of every command that loads a model.
BACKENDS = ["auto", "tensorrt", "onnxruntime-gpu", "openvino", "onnxruntime"]


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
            click.echo("edgedl: interrupted; nothing was written", err=True)
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
