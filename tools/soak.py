"""Soak: stream a source through a model for hours and check that nothing grows.

    python tools/soak.py --hours 12 --source csi://0 --bundle model.edgedl
    python tools/soak.py --minutes 10        # the demo detector (INT8) on a 30 fps synthetic camera

Every frame goes through the real pipeline: the source's capture thread, preprocessing, the model,
postprocessing and the sinks (none by default; ``--sink results.jsonl`` adds one). A line per
``--interval`` seconds (a minute) gives frames, FPS over the interval, RSS, threads, open file
descriptors, the p99 latency of the latest slice of results and the drops so far. At the end the
bounds are checked, and the script exits 1 when one is violated:

- memory after warm-up: a straight line fitted to the RSS samples (``numpy.polyfit``) may grow by
  less than ``--max-growth-mb`` over the run, and no sample may stand that much above the lowest one
  before it (memory handed back to the system mid-run, a drop, is not growth);
- threads and file descriptors at the end of the run no more than when warm-up ended, and once
  the stream has stopped, no more than before it started;
- queue depths never above their bounds, in the pipeline and in the source;
- frames captured = frames processed + frames dropped + frames left at the stop, and results arrive in frame order;
- the p99 latency of the last window within ``--max-p99-ratio`` of the first after warm-up. A window
  is ``--slices`` slices of ``--slice`` results, and its p99 is the median of its slices' p99s, so
  one burst of load from another process (a shared CI machine) does not decide it; a steady
  rise does.

``tests/test_soak.py`` runs the same checks (this module's :func:`soak`) on 20,000 frames in CI.
Linux only: RSS and descriptors are read from ``/proc/self``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SETTLE_S = 3.0  # how long stopped threads get to exit before the counts after the stream are taken


@dataclass(frozen=True)
class Sample:
    """The process at one moment of a soak: ``seconds`` since the stream started, results so far, resources."""

    seconds: float
    frames: int
    dropped: int
    rss_mb: float
    threads: int
    fds: int


def rss_mb() -> float:
    """This process's resident memory in MB (VmRSS from /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS line in /proc/self/status")


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def threads_and_fds() -> tuple[int, int]:
    """Python threads alive and file descriptors open, now."""
    return threading.active_count(), open_fds()


def settled(baseline: tuple[int, int], timeout: float = SETTLE_S) -> tuple[int, int]:
    """Threads and descriptors once they are back to ``baseline``, or as they are after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while threads_and_fds() != baseline and time.monotonic() < deadline:
        time.sleep(0.02)
    return threads_and_fds()


def memory_growth(seconds: Sequence[float], rss: Sequence[float]) -> tuple[float, float, float]:
    """Slope (MB per hour) of a line fitted to RSS samples, the growth it predicts over their span (MB), and their rise (MB).

    The rise is the most any sample stands above the lowest sample taken before it: a leak raises
    it, while memory released once (a garbage collection, an allocator trimming its heap) does not.
    """
    if len(rss) < 2:
        return 0.0, 0.0, 0.0
    values = np.asarray(rss, np.float64)
    slope = float(np.polyfit(np.asarray(seconds, np.float64), values, 1)[0])
    rise = float(np.max(values - np.minimum.accumulate(values)))
    return slope * 3600.0, slope * (seconds[-1] - seconds[0]), rise


class LatencySlices:
    """p99 capture-to-result latency of consecutive slices of ``size`` results, after the first ``skip`` (warm-up).

    ``add`` is called from the pipeline's output thread; a slice's latencies are dropped once its
    p99 is taken, so a run of any length keeps one float per finished slice.
    """

    def __init__(self, size: int, skip: int) -> None:
        self.size, self.skip = size, skip
        self.p99s: list[float] = []
        self._seen = 0
        self._current: list[float] = []

    def add(self, latency_ms: float) -> None:
        self._seen += 1
        if self._seen <= self.skip:
            return
        self._current.append(latency_ms)
        if len(self._current) == self.size:
            self.p99s.append(float(np.percentile(self._current, 99)))
            self._current = []


@dataclass
class SoakReport:
    """What a soak measured; :meth:`violations` checks it against the bounds."""

    warmup: int
    slices_per_window: int = 5
    samples: list[Sample] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)  # one per slice
    captured: int = 0
    processed: int = 0
    delivered: int = 0
    dropped: int = 0
    discarded: int = 0  # left at the source or in flight when the run stopped
    out_of_order: int = 0
    stopped: bool = False  # ended by time or Ctrl-C: results still queued for the app were abandoned
    max_depth: dict[str, int] = field(default_factory=dict)
    bounds: dict[str, int] = field(default_factory=dict)
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)

    @property
    def warm(self) -> list[Sample]:
        """The samples taken after warm-up."""
        return [s for s in self.samples if s.frames >= self.warmup]

    def growth(self) -> tuple[float, float, float]:
        """Memory after warm-up: slope (MB/h), fitted growth over the run (MB) and rise (MB); see :func:`memory_growth`."""
        warm = self.warm
        return memory_growth([s.seconds for s in warm], [s.rss_mb for s in warm])

    def window_p99s(self) -> tuple[float, float] | None:
        """p99 latency (ms) of the first and the last window after warm-up; ``None`` before two windows have run."""
        n = self.slices_per_window
        if len(self.p99s) < 2 * n:
            return None
        return float(np.median(self.p99s[:n])), float(np.median(self.p99s[-n:]))

    def violations(self, max_growth_mb: float = 20.0, max_p99_ratio: float = 1.5) -> list[str]:
        """Every bound this run broke, one line each (empty: it passed)."""
        found = []
        warm, windows = self.warm, self.window_p99s()
        if len(warm) < 3 or windows is None:
            found.append(f"too short to judge: {len(warm)} samples and {len(self.p99s)} latency slices after warm-up")
        _, growth, rise = self.growth()
        if growth >= max_growth_mb or rise >= max_growth_mb:
            found.append(f"memory grew: fitted {growth:.1f} MB, rise {rise:.1f} MB (bound {max_growth_mb:g} MB)")
        if warm:  # first and last only: a read stuck for a while during a reconnection is not growth
            for name, attr in (("threads", "threads"), ("file descriptors", "fds")):
                start, end = getattr(warm[0], attr), getattr(warm[-1], attr)
                if end > start:
                    found.append(f"{name} grew during the run: {start} after warm-up, {end} at the end")
        for name, count, was in (("threads", self.after[0], self.before[0]), ("file descriptors", self.after[1], self.before[1])):
            if count > was:  # fewer is no leak: something else in the process closed a file meanwhile
                found.append(f"{name}: {was} before the stream, {count} after it stopped")
        for queue_name, depth in self.max_depth.items():
            if depth > self.bounds.get(queue_name, 0):
                found.append(f"queue {queue_name} held {depth}, above its bound {self.bounds.get(queue_name)}")
        if self.captured != self.processed + self.dropped + self.discarded:
            found.append(f"frames captured {self.captured} != processed {self.processed} + dropped {self.dropped} "
                         f"+ discarded {self.discarded}")
        if self.delivered > self.processed or (self.delivered < self.processed and not self.stopped) or self.out_of_order:
            found.append(f"{self.delivered} results reached the app for {self.processed} processed, "
                         f"{self.out_of_order} out of frame order")
        if windows is not None and windows[1] > max_p99_ratio * windows[0]:
            found.append(f"p99 latency of the last window {windows[1]:.2f} ms is above {max_p99_ratio:g}x "
                         f"the first's {windows[0]:.2f} ms")
        return found


def soak(model: Any, source: str, *, frames: int | None = None, seconds: float | None = None, warmup: int = 2000,
         slice_size: int = 1000, slices_per_window: int = 5, interval_s: float = 60.0, sink: Any = None,
         queue_size: int = 2, source_queue: int = 4, source_options: dict[str, Any] | None = None,
         on_line: Callable[[str], Any] | None = print) -> SoakReport:
    """Stream ``source`` through ``model`` until ``frames`` results, ``seconds`` or the source's end, sampling as it goes.

    ``warmup`` results are left out of the memory and latency checks; latency is taken per slice of
    ``slice_size`` results and judged per window of ``slices_per_window`` slices; a :class:`Sample`
    is taken every ``interval_s`` seconds and, with ``on_line``, printed. ``source_options`` go to
    :func:`edgedl.sources.open_source`. Ctrl-C stops the stream early and the report covers what ran.
    """
    from edgedl.pipeline import Pipeline
    from edgedl.sources import open_source

    report = SoakReport(warmup=warmup, slices_per_window=slices_per_window, before=threads_and_fds())
    slices = LatencySlices(slice_size, warmup)
    last_id = -1

    def on_result(result: Any) -> None:
        nonlocal last_id
        report.delivered += 1
        report.out_of_order += result.frame_id <= last_id
        last_id = result.frame_id
        slices.add(result.latency_ms)

    stream = open_source(source, queue_size=source_queue, **(source_options or {}))
    try:
        pipeline = Pipeline(model, stream, sink, on_result=on_result, max_frames=frames, queue_size=queue_size)
    except BaseException:
        stream.close()
        raise
    pipeline.start()
    started = time.monotonic()
    try:
        while not pipeline.join(timeout=interval_s):
            sample = Sample(time.monotonic() - started, pipeline.stats.processed, pipeline.dropped, rss_mb(),
                            *threads_and_fds())
            if on_line is not None:
                on_line(_line(sample, report.samples[-1] if report.samples else None, slices.p99s))
            report.samples.append(sample)
            if seconds is not None and sample.seconds >= seconds:
                report.stopped = True
                pipeline.stop()
    except KeyboardInterrupt:
        report.stopped = True
        pipeline.stop()
    stats = pipeline.stats
    report.p99s = slices.p99s
    report.captured, report.processed = stats.captured, stats.processed
    report.dropped, report.discarded = stats.dropped, stats.discarded
    report.max_depth = dict(stats.max_depth)
    report.bounds = {name: queue_size for name in report.max_depth} | {"source": source_queue}
    report.after = settled(report.before)
    return report


def _line(sample: Sample, previous: Sample | None, p99s: list[float]) -> str:
    """One progress line: totals, FPS since the previous line, resources, the latest slice's p99, drops."""
    since = previous or Sample(0.0, 0, 0, 0.0, 0, 0)
    span = sample.seconds - since.seconds
    fps = (sample.frames - since.frames) / span if span > 0 else 0.0
    p99 = f"{p99s[-1]:7.2f} ms" if p99s else "      - ms"
    return (f"{sample.seconds / 60:8.1f} min  frames {sample.frames:9d}  {fps:7.1f} fps  RSS {sample.rss_mb:7.1f} MB  "
            f"threads {sample.threads:3d}  fds {sample.fds:4d}  p99 {p99}  dropped {sample.dropped}")


def summarize(report: SoakReport) -> str:
    """The figures of a finished soak, a few lines."""
    slope, growth, rise = report.growth()
    windows = report.window_p99s()
    p99 = f"{windows[0]:.2f} ms first, {windows[1]:.2f} ms last window" if windows else "fewer than two windows"
    return (f"frames: {report.captured} captured = {report.processed} processed + {report.dropped} dropped "
            f"+ {report.discarded} left at the stop\n"
            f"memory after warm-up: {slope:+.2f} MB/h, fitted growth {growth:+.2f} MB, rise {rise:.2f} MB "
            f"over {len(report.warm)} samples\n"
            f"p99 latency: {p99} ({len(report.p99s)} slices, {report.slices_per_window} a window)\n"
            f"threads/fds: {report.before} before, {report.after} after; queue depth {report.max_depth} "
            f"(bounds {report.bounds})")


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 when every bound held, 1 when one was violated, edgedl's exit code for a bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--hours", type=float, help="how long to stream")
    length.add_argument("--minutes", type=float, help="how long to stream (default 10)")
    parser.add_argument("--source", default="synthetic://shapes?fps=30", help="any source URI (default: a 30 fps camera)")
    parser.add_argument("--bundle", type=Path, help="the model (default: the demo detector, converted to INT8 here)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--sink", action="append", default=[], help="a sink URI as for edgedl run (repeatable)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--slice", type=int, default=1800, help="results per latency slice (a minute at 30 fps)")
    parser.add_argument("--slices", type=int, default=5, help="slices per latency window")
    parser.add_argument("--warmup", type=int, help="results before the checks start (default: two slices)")
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    parser.add_argument("--max-p99-ratio", type=float, default=1.5)
    args = parser.parse_args(argv)
    seconds = 3600.0 * args.hours if args.hours is not None else 60.0 * (args.minutes or 10.0)
    from edgedl.errors import EdgeDLError

    try:
        report = _run(args, seconds)
    except EdgeDLError as exc:  # a bad bundle, source or sink: one line, and edgedl's exit code for it
        print(f"soak: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(summarize(report))
    violations = report.violations(args.max_growth_mb, args.max_p99_ratio)
    for violation in violations:
        print(f"soak: VIOLATED: {violation}", file=sys.stderr)
    print("soak: every bound held" if not violations else f"soak: {len(violations)} bound(s) violated")
    return 1 if violations else 0


def _run(args: argparse.Namespace, seconds: float) -> SoakReport:
    """Load the model (the demo detector when no --bundle is given) and soak it for ``seconds``."""
    import edgedl

    with tempfile.TemporaryDirectory(prefix="edgedl-soak-") as scratch:
        if args.bundle is None:
            from edgedl.demo import demo_bundle

            args.bundle = demo_bundle(Path(scratch), progress=False)
        with edgedl.load(args.bundle, backend=args.backend) as model:
            print(f"soak: {model.path.name} on {model.backend} ({model.precision}), {args.source}, "
                  f"{seconds / 3600:.2f} h", flush=True)
            return soak(model, args.source, seconds=seconds, warmup=args.warmup or 2 * args.slice,
                        slice_size=args.slice, slices_per_window=args.slices, interval_s=args.interval,
                        sink=args.sink or None, on_line=lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
