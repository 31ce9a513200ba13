"""The ``edgedl`` command line. Imports stay light: heavy work loads inside each command."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgedl import __version__
from edgedl.errors import EdgeDLError, UsageError


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


def parse_shape(text: str) -> tuple[str, list[int]]:
    """``NAME=1x3x224x224`` → (``NAME``, [1, 3, 224, 224])."""
    name, sep, dims = text.rpartition("=")
    try:
        if not sep or not name:
            raise ValueError
        shape = [int(d) for d in dims.lower().split("x")]
        if any(d <= 0 for d in shape):
            raise ValueError
    except ValueError:
        raise UsageError(f"--input-shape {text!r} is not NAME=DxDxD…", fix="write it like images=1x3x224x224") from None
    return name, shape


def parse_triple(text: str | None, option: str) -> tuple[float, float, float] | None:
    """``0.485,0.456,0.406`` → a tuple of three floats (one value is repeated three times)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a number list", fix=f"write it like {option} 0.5,0.5,0.5") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise UsageError(f"{option} takes one or three values, got {len(values)}", fix=f"write it like {option} 0.5,0.5,0.5")
    return (values[0], values[1], values[2])


verbose_option = click.option("--verbose", "-v", is_flag=True, help="Log each step; show tracebacks on errors.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgedl")
def main() -> None:
    """edgedl: take a trained vision model to the edge.

    \b
      edgedl convert model.onnx --int8     calibrated, validated INT8 bundle
      edgedl info model.edgedl             what a bundle holds
    """


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--int8", is_flag=True, help="Add a calibrated INT8 variant (fastest scheme that passes the gate).")
@click.option("--fp16", is_flag=True, help="Add an FP16 variant (float32 inputs/outputs).")
@click.option("--calib-data", type=click.Path(path_type=Path),
              help="Folder of images, .npy or .npz. Default for image models: photographs shipped with edgedl.")
@click.option("--calib-samples", type=int, default=128, show_default=True, help="Samples used to calibrate.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True)
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3x224x224",
              help="Fix an input's shape (repeatable).")
@click.option("--preset", type=click.Choice(["imagenet", "yolo", "raw01"]),
              help="Preprocessing preset; the options below override it.")
@click.option("--mean", help="Per-channel mean after scaling, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Per-channel std after scaling, e.g. 0.229,0.224,0.225.")
@click.option("--scale", type=float, help="Pixel multiplier before mean/std (default 1/255).")
@click.option("--color", type=click.Choice(["RGB", "BGR"]), help="Channel order the model expects.")
@click.option("--resize", type=click.Choice(["stretch", "letterbox", "center-crop"]), help="How frames fit the input.")
@click.option("--pad-value", type=int, help="Letterbox padding value (0-255).")
@click.option("--labels", type=click.Path(path_type=Path), help="Text file with one class label per line.")
@click.option("--task", type=click.Choice(["classify", "detect", "segment", "raw"]))
@click.option("--target", type=click.Choice(["cpu", "tensorrt", "all"]), default="cpu", show_default=True,
              help="Which INT8 variants to write: CPU (ONNX Runtime), TensorRT Q/DQ + calibration cache, or both.")
@click.option("--min-cosine", type=float, default=0.99, show_default=True, help="Accuracy gate: cosine vs FP32.")
@click.option("--min-top1", type=float, default=0.9, show_default=True, help="Accuracy gate: top-1 agreement.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the choice of samples.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Bundle folder (default: MODEL.edgedl).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@verbose_option
@handle_errors
def convert(model: Path, input_shapes: tuple[str, ...], mean: str | None, std: str | None, scale: float | None,
            color: str | None, resize: str | None, pad_value: int | None, preset: str | None, verbose: bool,
            **options: Any) -> None:
    """Convert an ONNX model into a calibrated, validated bundle."""
    from edgedl.conversion import convert as run_convert

    shapes = dict(parse_shape(s) for s in input_shapes)
    preprocess = {"preset": preset, "mean": parse_triple(mean, "--mean"), "std": parse_triple(std, "--std"),
                  "scale": scale, "color": color, "resize": resize, "pad_value": pad_value}
    bundle = run_convert(model, input_shapes=shapes or None, preprocess=preprocess, show=True, **options)
    _print_bundle(bundle)
    click.echo(f"wrote {bundle.path}")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@verbose_option
@handle_errors
def info(bundle: Path, as_json: bool, verbose: bool) -> None:
    """Show what a bundle holds: inputs, preprocessing, variants, calibration, validation."""
    from edgedl.bundle import Bundle

    opened = Bundle.open(bundle)
    if as_json:
        click.echo(opened.manifest.dumps(), nl=False)
    else:
        _print_bundle(opened)


def _print_bundle(bundle: Any) -> None:
    from edgedl.report import print_manifest

    sizes = {k: (bundle.path / v.file).stat().st_size for k, v in bundle.manifest.variants.items()}
    print_manifest(bundle.manifest, sizes)


if __name__ == "__main__":  # pragma: no cover
    main()
