"""``edgedl run`` and ``edgedl demo``: stream a source through a model from the command line."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgedl.cli.common import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    check_output_file,
    check_output_folder,
    choice,
    handle_errors,
    split_name,
    verbose_option,
    write_output_file,
)
from edgedl.errors import UsageError
from edgedl.preprocess import PRESETS
from edgedl.tracking import TRACKERS
from edgedl.vocabulary import AUTO, DEVICE_PREPROCESS, MAX_BATCH


class _Status:
    """A live one-line status on stderr (rewritten in place on a terminal, a line per interval otherwise)."""

    def __init__(self, quiet: bool, interval_s: float = 1.0) -> None:
        self.quiet, self.interval_s = quiet, interval_s
        self._last = time.monotonic()
        self._tty = sys.stderr.isatty()

    def update(self, pipeline: Any, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last < self.interval_s):
            return
        self._last = now
        stats = pipeline.stats
        recent = stats.latencies_ms[-50:]
        latency = sorted(recent)[len(recent) // 2] if recent else 0.0
        line = (f"frames {stats.processed:6d}  {stats.fps:6.1f} fps  latency p50 {latency:7.1f} ms  "
                f"dropped {int(pipeline.dropped):5d}")
        click.echo(("\r" + line) if self._tty else line, err=True, nl=not self._tty)

    def done(self) -> None:
        if self._tty and not self.quiet:
            click.echo("", err=True)


def stream_to_end(pipeline: Any, quiet: bool) -> tuple[dict[str, Any], str]:
    """Run a started pipeline to its end, Ctrl-C or SIGTERM; return its summary and how it ended.

    Either signal stops the pipeline and closes its sinks (videos finalized) before this returns.
    """
    status = _Status(quiet)
    ended = "end of stream"
    terminated = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not pipeline.join(timeout=0.25):
            status.update(pipeline)
    except KeyboardInterrupt:
        # Ctrl-C is the user's interruption (exit 130); SIGTERM is a service manager's stop (exit 0).
        ended = "stopped by SIGTERM" if terminated else "interrupted"
        pipeline.stop()  # closes the sinks: an output video is finalized, not cut off
    finally:
        signal.signal(signal.SIGTERM, previous)
        status.done()
    return pipeline.stats.summary(), ended


def print_summary(summary: dict[str, Any], title: str) -> None:
    """The end-of-run table: frames, FPS, latency percentiles, mean time per stage."""
    from rich.console import Console
    from rich.table import Table

    from edgedl.pipeline import BATCHED_STAGES

    table = Table(title=title, show_header=False)
    lat = summary["latency_ms"]
    rows = [("frames processed", f"{summary['frames_processed']} of {summary['frames_captured']} captured "
                                 f"({summary['frames_dropped']} dropped, {summary['frames_discarded']} left at the stop)"),
            ("throughput", f"{summary['fps']:.1f} fps over {summary['seconds']:.1f} s"),
            ("latency (capture → result)", f"p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, "
                                           f"max {lat['max']:.1f} ms")]
    batched = any(size > 1 for size in summary.get("batch_sizes", {}))
    rows += [(f"  {stage}", f"{ms:.2f} {'ms/call' if batched and stage in BATCHED_STAGES else 'ms/frame'}")
             for stage, ms in summary["stage_ms"].items()]
    if batched:
        rows.append(("batches (frames: calls)", ", ".join(f"{size}: {count}" for size, count in
                                                          summary["batch_sizes"].items())))
    for name, part in summary.get("sources", {}).items():
        rows.append((f"source {name}", f"{part['frames_processed']} of {part['frames_captured']} frames "
                                       f"({part['frames_dropped']} dropped), {part['fps']:.1f} fps, latency p50 "
                                       f"{part['latency_ms']['p50']:.1f} ms, p99 {part['latency_ms']['p99']:.1f} ms"))
    for name, value in rows:
        table.add_row(name, value)
    Console(stderr=True).print(table)
    for event in summary["events"]:
        click.echo(f"edgedl: event: {event}", err=True)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--source", "sources", required=True, multiple=True,
              help="csi://0, /dev/video0, rtsp://…, clip.mp4, a folder or glob, gst://…, synthetic://shapes; repeat it for "
                   "several cameras through one model, optionally named: --source door=rtsp://….")
@click.option("--sink", "sinks", multiple=True, help="out.mp4, frames/, results.jsonl, display, rtsp://… (repeatable).")
@click.option("--backend", type=choice(BACKEND_CHOICES), default=AUTO, show_default=True)
@click.option("--precision", type=choice(PRECISION_CHOICES), default=AUTO, show_default=True)
@click.option("--max-frames", type=int, help="Stop after this many frames.")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Detection confidence threshold.")
@click.option("--iou", type=click.FloatRange(0, 1), default=0.45, show_default=True, help="NMS IoU threshold.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes reported per frame (classifiers).")
@click.option("--postprocess", help="Postprocessor name (default: from the bundle's task and outputs).")
@click.option("--preset", type=choice(PRESETS), help="Preprocessing for a bare ONNX file.")
@click.option("--device-preprocess", type=choice(DEVICE_PREPROCESS), default=AUTO, show_default=True)
@click.option("--batch-size", type=int, help="The most frames per model call (default: the model's fixed batch, else "
                                            "8; a dynamic batch runs the frames that are ready).")
@click.option("--batch-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="How long a batch waits, once its first frame is in, for sources that have given it nothing yet.")
@click.option("--tracker", type=choice(TRACKERS), help="Give detections track ids that follow their objects, per source.")
@click.option("--metrics-port", type=int, help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics while running.")
@click.option("--overwrite", is_flag=True, help="Replace existing sink files; a sink with {source} in its name writes one "
                                                "file per source.")
@click.option("--quiet", "-q", is_flag=True, help="No live status line; the summary only.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the summary as JSON here.")
@verbose_option
@handle_errors
def run(bundle: Path, sources: tuple[str, ...], sinks: tuple[str, ...], backend: str, precision: str,
        max_frames: int | None, conf: float, iou: float, top_k: int, postprocess: str | None, preset: str | None,
        device_preprocess: str, batch_size: int | None, batch_wait_ms: float, tracker: str | None,
        metrics_port: int | None, overwrite: bool, quiet: bool, json_path: Path | None, verbose: bool) -> None:
    """Stream each --source through BUNDLE: live FPS and latency, a summary at the end; Ctrl-C stops cleanly."""
    from edgedl.model import load
    from edgedl.pipeline import Pipeline, by_name
    from edgedl.sinks import open_sink
    from edgedl.sources import parse_source
    from edgedl.sources.registry import reader_factory

    # What can be checked without the model is checked first: loading can take minutes (a TensorRT build).
    named = by_name([split_name(text) for text in sources])
    for uri in named.values():
        reader_factory(parse_source(uri))
    opened = [open_sink(uri, overwrite=overwrite) for uri in sinks]
    check_output_file(json_path, "--json")
    # A TensorRT engine with a dynamic batch is tuned for the batches this run will send.
    model = load(bundle, backend=backend, precision=precision, batch=batch_size or min(len(named), MAX_BATCH))
    pipeline = Pipeline(model, named, opened, on_result=lambda result: None, max_frames=max_frames, conf=conf, iou=iou,
                        top_k=top_k, postprocess=postprocess, preprocess=preset, device_preprocess=device_preprocess,
                        batch_size=batch_size, batch_wait_ms=batch_wait_ms, tracker=tracker, metrics_port=metrics_port)
    with model:
        pipeline.start()
        if pipeline.metrics_url:
            click.echo(f"edgedl: metrics at {pipeline.metrics_url}", err=True)
        summary, ended = stream_to_end(pipeline, quiet)
    print_summary(summary, f"{model.path.name} on {model.backend} ({model.precision}): {ended}")
    if json_path is not None:
        import json

        write_output_file(json_path, (json.dumps(summary, indent=2) + "\n").encode())
    if ended == "interrupted":
        sys.exit(130)


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("edgedl-demo"), show_default=True,
              help="Folder for the INT8 bundle and the annotated video.")
@click.option("--frames", type=int, default=300, show_default=True, help="Frames the synthetic camera sends.")
@click.option("--fps", type=float, default=30.0, show_default=True, help="Synthetic camera rate (0: as fast as possible).")
@click.option("--backend", type=choice(BACKEND_CHOICES), default=AUTO, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No live status line; the summary only.")
@verbose_option
@handle_errors
def demo(out: Path, frames: int, fps: float, backend: str, quiet: bool, verbose: bool) -> None:
    """Convert the shipped shapes detector to INT8 and stream a synthetic camera through it.

    Writes OUT/shapes_detector.edgedl and OUT/demo.mp4 (boxes drawn), and prints FPS, latency and
    accuracy against the known positions of the shapes.
    """
    from edgedl.demo import demo_bundle, demo_source
    from edgedl.evaluate import DetectionScore
    from edgedl.model import load
    from edgedl.pipeline import Pipeline
    from edgedl.sinks import open_sink

    if frames < 1:
        raise UsageError(f"--frames must be at least 1, got {frames}", fix="for example --frames 300")
    if fps < 0:
        raise UsageError(f"--fps must be 0 or more, got {fps}", fix="for example --fps 30 (0: as fast as possible)")
    check_output_folder(out, "--out")
    path = demo_bundle(out, progress=not quiet)
    score = DetectionScore()
    video = out / "demo.mp4"
    with load(path, backend=backend) as model:
        pipeline = Pipeline(model, demo_source(frames, fps), open_sink(video, overwrite=True),
                            on_result=lambda result: score.add(result.detections, result.frame.truth))
        pipeline.start()
        summary, ended = stream_to_end(pipeline, quiet)
        title = f"demo: shapes detector on {model.backend} ({model.precision}), synthetic camera at {fps:g} fps: {ended}"
    print_summary(summary, title)
    click.echo(f"accuracy: precision {score.precision:.3f}, recall {score.recall:.3f} at IoU 0.5 "
               f"({score.true_positives} found, {score.false_positives} false, {score.misses} missed "
               f"in {score.frames} frames)")
    click.echo(f"wrote {video} (boxes drawn) and {path}")
    if ended == "interrupted":
        sys.exit(130)
