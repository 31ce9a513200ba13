"""Memory and swap from ``/proc/meminfo``. On a Jetson the GPU shares this memory, so it bounds TensorRT
engine builds as well as the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgedl.device.probe import read_text

GIB = 1024**3


@dataclass(frozen=True)
class Memory:
    """Bytes of RAM and swap: total and available (``MemAvailable``, what a new process can still get)."""

    total: int
    available: int
    swap_total: int
    swap_free: int


def read_memory(root: Path) -> Memory | None:
    """The machine's memory, or None when ``/proc/meminfo`` is unreadable or incomplete."""
    text = read_text(root, "/proc/meminfo")
    if text is None:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    try:
        return Memory(values["MemTotal"], values["MemAvailable"], values.get("SwapTotal", 0), values.get("SwapFree", 0))
    except KeyError:
        return None
