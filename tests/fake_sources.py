"""A scripted fake device for the stream tests: it fails the ways real cameras and decoders do, on cue.

A :class:`FakeDevice` holds one script per connection: the first ``open()`` plays the first,
a reconnection the next, and an ``open()`` past the last is refused (the device is gone).
Scripts are lists of steps:

    frames(n, size)   n distinct frames (flat images whose value counts up across the device)
    SAME              the previous frame again (a still scene), after 10 ms
    FROZEN            the previous frame again, for ever, every 10 ms (a frozen camera or decoder)
    HANG              read() blocks until the test releases the device (OpenCV stuck in read)
    NONE              read() returns no frame (unplugged, or the end of a file)
    RAISE             read() raises OSError
    REFUSE            (instead of a script) open() fails

Readers come through the public registry like any other: ``register_reader("fake", make_reader)``
and ``open_source(device.uri)``.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

import numpy as np

from edgedl.errors import InputFileError
from edgedl.sources.reader import Capture, Report
from edgedl.sources.uri import SourceSpec

DEVICES: dict[str, FakeDevice] = {}
_ids = itertools.count()


@dataclass(frozen=True)
class Step:
    """One read's behaviour; ``seconds`` is how long the read takes."""

    kind: str
    size: tuple[int, int] = (64, 48)
    seconds: float = 0.0


def frames(n: int, size: tuple[int, int] = (64, 48), every: float = 0.0) -> list[Step]:
    """``n`` distinct frames of ``size`` (width, height), each read taking ``every`` seconds."""
    return [Step("frame", size, every)] * n


SAME = Step("same", seconds=0.01)
FROZEN = Step("frozen", seconds=0.01)
HANG = Step("hang")
NONE = Step("none")
RAISE = Step("raise")
REFUSE = "refuse"


class FakeDevice:
    """A scripted device; counts opens and closes so tests can check nothing leaks."""

    def __init__(self, *scripts: list[Step] | str, live: bool = True, reconnectable: bool = True) -> None:
        self.scripts = list(scripts)
        self.live, self.reconnectable = live, reconnectable
        self.opens = self.closes = 0
        self.counter = 0
        self.released = threading.Event()
        self.uri = f"fake://{next(_ids)}"
        DEVICES[self.uri.removeprefix("fake://")] = self

    def release(self) -> None:
        """Let every hung read return (as a dead connection finally does)."""
        self.released.set()


class FakeReader:
    """Plays one script of a :class:`FakeDevice` through the FrameReader protocol."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.live, self.reconnectable = device.live, device.reconnectable
        self.steps: list[Step] = []
        self.last: np.ndarray | None = None

    def open(self, report: Report) -> None:
        device = self.device
        connection = device.opens
        device.opens += 1
        script = device.scripts[connection] if connection < len(device.scripts) else REFUSE
        if script == REFUSE:
            raise InputFileError(f"{device.uri}: device not found (connection {connection})")
        self.steps = list(script)

    def read(self) -> Capture | None:
        if not self.steps:
            return None
        step = self.steps[0]
        if step.kind != "frozen":  # FROZEN repeats for ever
            self.steps.pop(0)
        time.sleep(step.seconds)
        if step.kind == "hang":
            self.device.released.wait(60)
            return None
        if step.kind == "none":
            return None
        if step.kind == "raise":
            raise OSError("device unplugged")
        if step.kind == "frame" or self.last is None:
            width, height = step.size
            self.last = np.full((height, width, 3), self.device.counter % 256, np.uint8)
            self.device.counter += 1
        return Capture(self.last.copy())

    def close(self) -> None:
        self.device.closes += 1

    def describe(self) -> str:
        return f"{self.device.uri} (fake)"


def make_reader(spec: SourceSpec) -> FakeReader:
    """The registry's factory for ``fake://N``."""
    return FakeReader(DEVICES[spec.target])
