"""``edgedl doctor``: what edgedl can do on this machine, and the command that fixes each problem."""

from __future__ import annotations

import json

import click

from edgedl.cli.common import handle_errors, verbose_option
from edgedl.device.report import CAPABILITIES


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--require", help="Comma-separated capabilities that must be present (exit 9 otherwise): "
                                f"{', '.join(CAPABILITIES)}.")
@verbose_option
@handle_errors
def doctor(as_json: bool, require: str | None, verbose: bool) -> None:
    """Check the OS, Python, runtimes, GPU, TensorRT, Jetson power settings, OpenCV/GStreamer and cameras."""
    from edgedl.device.doctor import missing_error, parse_require, render, run_checks, to_json

    report = run_checks(parse_require(require))
    click.echo(json.dumps(to_json(report), indent=2) if as_json else render(report))
    error = missing_error(report)
    if error is not None:
        raise error
