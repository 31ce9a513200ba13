"""The ``edgedl`` command line. Imports stay light: heavy work loads inside each command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from edgedl.about import __version__
from edgedl.cli.common import BACKEND_CHOICES, PRECISION_CHOICES, choice, handle_errors, parse_shape, verbose_option
from edgedl.cli.doctor_command import doctor
from edgedl.cli.profile_command import profile
from edgedl.cli.stream_commands import demo, run
from edgedl.errors import UsageError
from edgedl.options import DEFAULT_TOLERANCE, CalibrationOptions, ExportOptions, Gate, VariantOptions
from edgedl.preprocess import COLOR_ORDERS, LAYOUTS, PRESETS, RESIZE_MODES
from edgedl.vocabulary import AUTO, CALIBRATION_METHODS, EXPORTERS, RECOVERY_TECHNIQUES, TARGETS, TASKS


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgedl")
def main() -> None:
    """edgedl: take a trained vision model to the edge.

    \b
      edgedl convert model.onnx --int8     calibrated, validated INT8 bundle
      edgedl info model.edgedl             what a bundle holds, cached engines included
      edgedl build model.edgedl            build and cache the TensorRT engine on this device
      edgedl compare model.edgedl          per-output agreement across backends/precisions
    """


@main.command()
@click.argument("model", type=click.Path())  # a str: a Path would fold a URL's "//" before convert can refuse it
@click.option("--int8", is_flag=True, help="Add a calibrated INT8 variant (fastest scheme that passes the gate).")
@click.option("--fp16", is_flag=True, help="Add an FP16 variant (float32 inputs/outputs).")
@click.option("--calib-data", type=click.Path(path_type=Path),
              help="Folder of images, .npy or .npz. Default for image models: photographs shipped with edgedl.")
@click.option("--calib-samples", type=int, default=CalibrationOptions.samples, show_default=True,
              help="Samples used to calibrate.")
@click.option("--calib-method", type=choice(CALIBRATION_METHODS), default=CalibrationOptions.method, show_default=True)
@click.option("--recover", default=CalibrationOptions.recover, show_default=True, metavar="auto|none|LIST",
              help="Before keeping layers in float, try to win INT8 accuracy back: auto (all), none, or a comma-"
                   f"separated list of {', '.join(RECOVERY_TECHNIQUES)}.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=1x3x224x224",
              help="Fix an input's shape (repeatable).")
@click.option("--preset", type=choice(PRESETS), help="Preprocessing preset; the options below override it.")
@click.option("--mean", help="Per-channel mean after scaling, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Per-channel std after scaling, e.g. 0.229,0.224,0.225.")
@click.option("--scale", type=float, help="Pixel multiplier before mean/std (default 1/255).")
@click.option("--color", type=choice(COLOR_ORDERS), help="Channel order the model expects.")
@click.option("--resize", type=choice(RESIZE_MODES), help="How frames fit the input.")
@click.option("--pad-value", type=int, help="Letterbox padding value (0-255).")
@click.option("--labels", type=click.Path(path_type=Path), help="Text file with one class label per line.")
@click.option("--task", type=choice(TASKS))
@click.option("--target", type=choice(TARGETS), default=VariantOptions.target, show_default=True,
              help="Which INT8 variants to write: CPU (ONNX Runtime), TensorRT Q/DQ + calibration cache, or both.")
@click.option("--allow-mixed", is_flag=True,
              help="Write an INT8 variant that keeps over a quarter of its convolutions/matmuls in float "
                   "(labelled int8-mixed) instead of refusing it.")
@click.option("--min-cosine", type=float, default=Gate.min_cosine, show_default=True,
              help="Accuracy gate: cosine vs FP32.")
@click.option("--min-top1", type=float, default=Gate.min_top1, show_default=True, help="Accuracy gate: top-1 agreement.")
@click.option("--min-detections", type=click.FloatRange(0, 1), default=Gate.min_detections, show_default=True,
              help="Accuracy gate for detectors: share of FP32's detections found (and of its own FP32 agrees with).")
@click.option("--seed", type=int, default=CalibrationOptions.seed, show_default=True,
              help="Seed for the choice of samples.")
@click.option("--layout", type=choice(LAYOUTS),
              help="PyTorch/Keras: image input layout of the bundle (a Transpose is put in the graph if it differs).")
@click.option("--dynamic-batch", is_flag=True, help="Keep (PyTorch/Keras) or make (ONNX) the batch dimension dynamic, "
                                                     "so several cameras can share one model call.")
@click.option("--dynamic-hw", is_flag=True, help="PyTorch/Keras: keep image height and width dynamic.")
@click.option("--tolerance", type=float, help="PyTorch/Keras: max relative error of ONNX vs the source model "
              f"[default: {DEFAULT_TOLERANCE:g}].")
@click.option("--exporter", type=choice(EXPORTERS), default=ExportOptions.exporter, show_default=True,
              help="PyTorch/Keras: ONNX exporter (auto: dynamo, TorchScript where torch.export cannot capture).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Bundle folder (default: MODEL.edgedl).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@verbose_option
@handle_errors
def convert(model: str, input_shapes: tuple[str, ...], mean: str | None, std: str | None, scale: float | None,
            color: str | None, resize: str | None, pad_value: int | None, preset: str | None, verbose: bool,
            **options: Any) -> None:
    """Convert a model into a calibrated, validated bundle.

    MODEL is an ONNX file, a PyTorch torch.export program (.pt2) or TorchScript archive (.ts, .pt),
    a Keras file (.keras, .h5) or a TensorFlow SavedModel folder.
    """
    from edgedl.conversion import convert as run_convert

    shapes = dict(parse_shape(s) for s in input_shapes)
    preprocess = {"preset": preset, "mean": parse_triple(mean, "--mean"), "std": parse_triple(std, "--std"),
                  "scale": scale, "color": color, "resize": resize, "pad_value": pad_value}
    bundle = run_convert(model, input_shapes=shapes or None, preprocess=preprocess, show=True, **options)
    _print_bundle(bundle)
    check = bundle.manifest.validation.get("source")
    if check:
        count = sum(check["samples"].values())
        click.echo(f"ONNX matches the {check['framework']} model: max relative error {check['max_rel_error']:.2g} "
                   f"(tolerance {check['tolerance']:g}) on {count} inputs")
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
        _print_engines(opened.path / "engines")


def _print_bundle(bundle: Any) -> None:
    from edgedl.report import print_manifest

    sizes = {k: (bundle.path / v.file).stat().st_size for k, v in bundle.manifest.variants.items()}
    print_manifest(bundle.manifest, sizes)


def _print_engines(folder: Path) -> None:
    """Cached TensorRT engines, one line each, with the key they were built under."""
    from edgedl.runtimes.tensorrt.engine_cache import EngineCache

    entries = EngineCache(folder).entries() if folder.is_dir() else []
    if not entries:
        click.echo("cached engines: none (run edgedl build on the device to build one)")
        return
    click.echo(f"cached engines in {folder}:")
    for entry in entries:
        key = entry.get("key", {})
        shapes = "; ".join(f"{n} {'/'.join('x'.join(map(str, s)) for s in v)}" for n, v in key.get("shapes", {}).items())
        dla = "" if key.get("dla_core") is None else f", DLA core {key['dla_core']}"
        click.echo(f"  {entry.get('key_id')} [{entry.get('status')}]: {key.get('precision', '?')} from "
                   f"{key.get('variant', '?')}, TensorRT {key.get('tensorrt', '?')}, CUDA {key.get('cuda', '?')}, "
                   f"{key.get('gpu', '?')} (sm {key.get('compute_capability', '?')}){dla}, shapes "
                   f"{shapes or 'fixed'}, {entry.get('plan_bytes', 0) / 1e6:.2f} MB, model sha256 "
                   f"{str(key.get('model_sha256', ''))[:12]}…, built {entry.get('created', '?')}")


def _parse_profile(text: str) -> tuple[str, list[list[int]]]:
    """``NAME=1x3x640x640`` or ``NAME=MIN:OPT:MAX`` (each DxDxD) → (NAME, shapes)."""
    name, _, dims = text.rpartition("=")
    parts = dims.split(":")
    if len(parts) not in (1, 3):
        raise UsageError(f"--shape {text!r} needs one shape or MIN:OPT:MAX", fix="write it like images=1x3x640x640")
    return name, [parse_shape(f"{name}={part}", "--shape")[1] for part in parts]


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--precision", type=choice(PRECISION_CHOICES), default=AUTO, show_default=True,
              help="auto: INT8 if the bundle has it for TensorRT, else FP16 where fast, else FP32.")
@click.option("--device", type=int, default=0, show_default=True, help="CUDA device index.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=MIN[:OPT:MAX]",
              help="Range of a dynamic input, e.g. images=1x3x640x640:4x3x640x640:8x3x640x640 (repeatable).")
@click.option("--dla-core", type=int, help="Build for this DLA core (Jetson Xavier/Orin), GPU fallback on.")
@click.option("--workspace", "workspace_mib", type=int, help="Builder workspace limit in MiB.")
@click.option("--force", is_flag=True, help="Rebuild even when a matching engine is cached.")
@verbose_option
@handle_errors
def build(bundle: Path, precision: str, device: int, shapes: tuple[str, ...], dla_core: int | None,
          workspace_mib: int | None, force: bool, verbose: bool) -> None:
    """Build the TensorRT engine for this device ahead of time and cache it in the bundle's engines/."""
    from edgedl.model import load

    profile = dict(_parse_profile(s) for s in shapes)
    with load(bundle, backend="tensorrt", precision=precision, device=device, shapes=profile or None,
              dla_core=dla_core, workspace_mib=workspace_mib, rebuild=force) as model:
        details = model.describe()
    state = "built" if details["built_now"] else "already cached"
    click.echo(f"{state}: engine {details['engine']} ({model.precision} from {model.variant}, TensorRT "
               f"{details['tensorrt']}, {details['gpu']}) at {details['plan']}")


def _split_list(text: str | None) -> list[str] | None:
    """``a, B`` → [``a``, ``b``]: choices in any case, as --backend and --precision take them."""
    return [part.strip().lower() for part in text.split(",") if part.strip()] if text else None


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--backends", help=f"Comma-separated: {', '.join(BACKEND_CHOICES)} [auto].")
@click.option("--precisions", help=f"Comma-separated: {', '.join(PRECISION_CHOICES)} [every precision the bundle has].")
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder of images, .npy or .npz [the photographs shipped with edgedl, or noise].")
@click.option("--samples", type=int, default=8, show_default=True, help="Inputs to compare on.")
@click.option("--min-cosine", type=float, default=Gate.min_cosine, show_default=True,
              help="Per-output cosine vs the reference.")
@click.option("--min-top1", type=float, default=Gate.min_top1, show_default=True, help="Top-1 agreement (classifiers).")
@click.option("--min-detections", type=click.FloatRange(0, 1), default=Gate.min_detections, show_default=True,
              help="Detection agreement (detectors, with enough detections in the inputs).")
@click.option("--atol", type=float, help="Elementwise absolute tolerance (off unless given).")
@click.option("--rtol", type=float, help="Elementwise relative tolerance (off unless given).")
@click.option("--rounds", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed runs per backend, interleaved.")
@click.option("--device", type=int, default=0, show_default=True, help="CUDA device index.")
@verbose_option
@handle_errors
def compare(bundle: Path, backends: str | None, precisions: str | None, data: Path | None, samples: int,
            min_cosine: float, min_top1: float, min_detections: float, atol: float | None, rtol: float | None,
            rounds: int, device: int, verbose: bool) -> None:
    """Run the same inputs through backends or precisions and report per-output agreement.

    The first run is the reference; the exit code is non-zero when any run disagrees beyond the tolerances.
    """
    from rich.console import Console

    from edgedl.compare import compare as run_compare
    from edgedl.compare import report_table
    from edgedl.errors import AccuracyGateError

    gate = Gate(min_cosine=min_cosine, min_top1=min_top1, min_detections=min_detections)
    result = run_compare(bundle, _split_list(backends), _split_list(precisions), data, samples, gate=gate, atol=atol,
                         rtol=rtol, rounds=rounds, device=device)
    click.echo(f"inputs: {result.data}")
    # A pipe or log file has no width: give the table room rather than truncating run names.
    Console(width=None if sys.stdout.isatty() else 160).print(report_table(result))
    if not result.passed:
        raise AccuracyGateError(f"{len(result.failures)} check(s) failed; first: {result.failures[0]}", path=bundle,
                                fix="inspect the variant, or loosen --min-cosine/--min-top1/--min-detections/--atol/--rtol")
    click.echo(f"all {len(result.runs) - 1} run(s) agree with {result.runs[0].label} within tolerance")


main.add_command(run)
main.add_command(demo)
main.add_command(doctor)
main.add_command(profile)

if __name__ == "__main__":  # pragma: no cover
    main()
