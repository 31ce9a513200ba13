"""What every ``edgedl`` command shares: one-line errors with exit codes, and the --verbose option."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from edgedl.errors import EdgeDLError


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
