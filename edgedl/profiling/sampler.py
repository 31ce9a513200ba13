"""Telemetry sampled during a run, in a background thread, from the best source the machine has.

    with TelemetrySampler(default_source(interval_ms=100)) as sampler:
        ...                                   # the run
    samples = sampler.samples

Sources: ``tegrastats --interval N`` on a Jetson, ``nvidia-smi --loop-ms`` where a discrete GPU is,
else the kernel's files (:mod:`edgedl.profiling.sysfs`). Command sources are read a line at a time
and parsed as lines arrive; stopping terminates the command, which ends the reader at end of file.
Memory stays bounded however long the run (:class:`~edgedl.profiling.telemetry.SampleBuffer`).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from edgedl.profiling.telemetry import SampleBuffer, TelemetrySample

log = logging.getLogger("edgedl.profiling")
#: How long stop() waits for a command to exit after SIGTERM, and for the thread to finish.
STOP_TIMEOUT_S = 2.0

LineParser = Callable[[str, float], TelemetrySample | None]


class CommandSource:
    """A command that prints one reading per line (tegrastats, nvidia-smi), parsed line by line."""

    def __init__(self, name: str, argv: Sequence[str], parse: LineParser) -> None:
        self.name, self.argv, self.parse = name, list(argv), parse
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def readings(self, stop: threading.Event) -> Iterator[TelemetrySample]:
        with self._lock:
            if stop.is_set():  # stopped before the thread got here: start nothing
                return
            self._process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)
        assert self._process.stdout is not None
        try:
            with self._process.stdout as lines:
                for line in lines:
                    if stop.is_set():
                        break
                    sample = self.parse(line, time.monotonic())
                    if sample is not None:
                        yield sample
        finally:
            self.close()

    def close(self) -> None:
        """Terminate the command (killed if it ignores SIGTERM) and reap it."""
        with self._lock:
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PollSource:
    """A function read every ``interval_s`` seconds: at once, then at each interval, and once more when stopped."""

    def __init__(self, name: str, read: Callable[[], TelemetrySample], interval_s: float) -> None:
        self.name, self.read, self.interval_s = name, read, interval_s

    def readings(self, stop: threading.Event) -> Iterator[TelemetrySample]:
        while not stop.is_set():
            yield self.read()
            stop.wait(self.interval_s)
        yield self.read()  # a last reading at the stop: a run shorter than the interval still gets loads over it

    def close(self) -> None:
        """Nothing to release: the stop flag ends the loop."""


Source = CommandSource | PollSource


def default_source(interval_ms: int = 100, device: int = 0, root: Path = Path("/")) -> Source:
    """tegrastats on a Jetson, nvidia-smi where there is one, else the kernel's files."""
    from edgedl.profiling.sysfs import SysfsReader

    if shutil.which("tegrastats"):
        from edgedl.profiling.tegrastats import parse_tegrastats

        return CommandSource("tegrastats", ["tegrastats", "--interval", str(interval_ms)], parse_tegrastats)
    if shutil.which("nvidia-smi"):
        from edgedl.profiling.nvidia_smi import parse_nvidia_smi, sample_command

        return CommandSource("nvidia-smi", sample_command(device, interval_ms), parse_nvidia_smi)
    return PollSource("sysfs", SysfsReader(root), interval_ms / 1e3)


def live_sampler(interval_ms: int = 1000, device: int = 0) -> TelemetrySampler:
    """A started sampler for a stream that runs for days: pass its :meth:`~TelemetrySampler.current` as the
    telemetry of :class:`edgedl.live_metrics.LiveMetrics`, and ``stop()`` it when the stream ends."""
    return TelemetrySampler(default_source(interval_ms, device), capacity=2).start()


class TelemetrySampler:
    """Collects a source's readings in a daemon thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, source: Source, capacity: int = 2000) -> None:
        self.source = source
        self.buffer = SampleBuffer(capacity)
        self.error: str | None = None
        self._latest: TelemetrySample | None = None  # kept apart from the buffer, which thins out what it keeps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgedl-telemetry", daemon=True)

    @property
    def samples(self) -> list[TelemetrySample]:
        """The readings so far, oldest first."""
        return self.buffer.snapshot()

    def start(self) -> TelemetrySampler:
        self._thread.start()
        return self

    def stop(self) -> list[TelemetrySample]:
        """Stop the source and the thread; returns the readings. Safe to call twice."""
        self._stop.set()
        self.source.close()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        return self.samples

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def current(self) -> TelemetrySample | None:
        """The newest reading while the sampler runs; None before the first and once it has stopped or failed."""
        return self._latest if self.running else None

    def _run(self) -> None:
        try:
            for sample in self.source.readings(self._stop):
                self._latest = sample
                self.buffer.add(sample)
        except OSError as exc:  # the command vanished or could not start: the run goes on without telemetry
            self.error = f"{self.source.name}: {exc}"
            log.warning("telemetry stopped: %s", self.error)

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
