"""``edgedl profile``: latency percentiles per stage and per layer, with the device's clocks, heat and power."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgedl.cli.common import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    check_output_file,
    choice,
    handle_errors,
    split_name,
    verbose_option,
    write_output_file,
)
from edgedl.errors import UsageError
from edgedl.vocabulary import AUTO


def _console() -> Any:
    from rich.console import Console

    # A pipe or log file has no width: give the tables room rather than wrapping them.
    return Console(width=None if sys.stdout.isatty() else 160)


def _diff(paths: tuple[Path, Path], noise: float, markdown_path: Path | None) -> None:
    from edgedl.profiling.diff import diff_reports, diff_table
    from edgedl.profiling.markdown import markdown_table
    from edgedl.profiling.render import rich_table
    from edgedl.profiling.schema import load_report

    old, new = (load_report(path) for path in paths)
    table = diff_table(diff_reports(old, new, noise))
    _console().print(rich_table(table))
    if markdown_path is not None:
        write_output_file(markdown_path, (markdown_table(table) + "\n").encode())


@click.command()
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--backend", type=choice(BACKEND_CHOICES), default=AUTO, show_default=True)
@click.option("--precision", type=choice(PRECISION_CHOICES), default=AUTO, show_default=True)
@click.option("--batch", type=int, help="Inputs per inference (needs a dynamic batch).")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=1x3xHxW", help="An input's shape (repeatable).")
@click.option("--warmup", type=int, default=10, show_default=True,
              help="Warm-up runs, reported apart (with --source: frames of each source).")
@click.option("--runs", type=int, help="Steady-state runs (with --source: frames of each source) [default: 500].")
@click.option("--duration", "duration_s", type=float, help="Run for this many seconds instead of --runs.")
@click.option("--source", "sources", multiple=True,
              help="Profile the whole pipeline on this source (camera, file, rtsp://…, synthetic://shapes); repeat it "
                   "for several through one model, reported each and in total, optionally named: --source door=rtsp://….")
@click.option("--per-layer", is_flag=True, help="Per-layer times from the runtime's profiler.")
@click.option("--top", type=int, default=10, show_default=True, help="Layers shown with --per-layer.")
@click.option("--compare", metavar="BACKEND:PRECISION,…", help="Several models side by side, measured alternately.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Write a PNG: histogram and timeline.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), help="Write markdown for an issue.")
@click.option("--diff", "diff_paths", nargs=2, type=click.Path(path_type=Path), metavar="OLD.json NEW.json",
              help="Compare two saved reports instead of profiling.")
@click.option("--noise", type=float, default=5.0, show_default=True, help="--diff: changes below this % are noise.")
@click.option("--interval-ms", type=int, default=100, show_default=True, help="Telemetry sampling interval.")
@click.option("--no-telemetry", is_flag=True, help="Do not sample clocks, temperatures and power.")
@click.option("--device", type=int, default=0, show_default=True, help="CUDA device index.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@verbose_option
@handle_errors
def profile(bundle: Path | None, shapes: tuple[str, ...], sources: tuple[str, ...], compare: str | None,
            json_path: Path | None, plot_path: Path | None, markdown_path: Path | None, diff_paths: tuple[Path, ...],
            noise: float, no_telemetry: bool, verbose: bool, **options: Any) -> None:
    """Measure BUNDLE's latency (percentiles, cold start, throughput) with the device's clocks, heat and power.

    \b
      edgedl profile model.edgedl --runs 1000 --json before.json
      edgedl profile model.edgedl --source csi://0 --duration 60 --plot run.png
      edgedl profile model.edgedl --source door=rtsp://cam1/stream --source yard=rtsp://cam2/stream
      edgedl profile model.edgedl --compare onnxruntime:fp32,onnxruntime:int8 --per-layer
      edgedl profile --diff before.json after.json
    """
    if diff_paths:
        if bundle is not None or json_path is not None or plot_path is not None:
            raise UsageError("--diff compares two saved reports: it takes no BUNDLE, --json or --plot",
                             fix="edgedl profile --diff old.json new.json [--markdown diff.md]")
        if noise < 0:
            raise UsageError(f"--noise must be 0 or more, got {noise:g}", fix="for example --noise 5")
        check_output_file(markdown_path, "--markdown")
        _diff((diff_paths[0], diff_paths[1]), noise, markdown_path)
        return
    if bundle is None:
        raise UsageError("missing BUNDLE", fix="edgedl profile model.edgedl (or --diff old.json new.json)")
    from edgedl.cli.common import parse_shape
    from edgedl.pipeline import by_name
    from edgedl.profiling.settings import ProfileSettings, parse_compare

    settings = ProfileSettings(bundle, shapes=dict(parse_shape(s, "--shape") for s in shapes), telemetry=not no_telemetry,
                               source=by_name([split_name(text) for text in sources]) if sources else None,
                               compare=parse_compare(compare) if compare else [], **options).check()
    for path, option in ((json_path, "--json"), (plot_path, "--plot"), (markdown_path, "--markdown")):
        check_output_file(path, option)
    _profile(settings, json_path, plot_path, markdown_path)


def _profile(settings: Any, json_path: Path | None, plot_path: Path | None, markdown_path: Path | None) -> None:
    import json

    from edgedl.profiling.render import print_report
    from edgedl.profiling.report import build_report
    from edgedl.profiling.schema import schema_errors
    from edgedl.profiling.session import run_profile

    report = build_report(run_profile(settings, progress=lambda message: click.echo(f"edgedl: {message}", err=True)))
    errors = schema_errors(report)
    if errors:  # a report that breaks its own schema is edgedl's bug, not the user's
        raise RuntimeError(f"the profile report does not match its schema: {errors[:3]}")
    print_report(report, _console())
    if json_path is not None:
        write_output_file(json_path, (json.dumps(report, indent=1) + "\n").encode())
    if markdown_path is not None:
        from edgedl.profiling.markdown import report_markdown

        write_output_file(markdown_path, report_markdown(report).encode())
    if plot_path is not None:
        from edgedl.profiling.plot import render_png

        write_output_file(plot_path, render_png(report))
