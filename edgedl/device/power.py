"""Jetson power state: the nvpmodel mode and whether jetson_clocks has pinned the clocks.

The mode comes from ``nvpmodel -q`` (``NV Power Mode: 15W`` then the mode id), the list of
modes from ``/etc/nvpmodel.conf`` (``< POWER_MODEL ID=0 NAME=MAXN >``). jetson_clocks leaves no
flag behind: it raises every clock's floor to its ceiling, so the state is read from sysfs by
comparing each CPU's and the GPU's minimum and maximum frequency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edgedl.device.probe import Runner, read_text

_MODE_NAME = re.compile(r"NV Power Mode:\s*(\S+)")
_MODE_ID = re.compile(r"^\s*(\d+)\s*$", re.MULTILINE)
_CONF_MODE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+)\s*>")
_CONF_DEFAULT = re.compile(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>")
#: devfreq names of Jetson GPUs: Nano (gm20b, "57000000.gpu"), TX2 (gp10b), Xavier (gv11b), Orin (ga10b, "17000000.gpu").
GPU_DEVFREQ = (".gpu", ".gm20b", ".gp10b", ".gv11b", ".ga10b")


@dataclass(frozen=True)
class PowerMode:
    """An nvpmodel mode: its id (``nvpmodel -m ID``) and name."""

    id: int | None
    name: str


@dataclass(frozen=True)
class PowerModes:
    """The modes ``/etc/nvpmodel.conf`` defines, and the one the device boots in."""

    modes: dict[int, str] = field(default_factory=dict)
    default: int | None = None

    def fastest(self) -> PowerMode | None:
        """The MAXN mode where the device has one (``MAXN``, ``MAXN_SUPER``); it lifts every power cap."""
        for mode_id, name in sorted(self.modes.items()):
            if name.upper().startswith("MAXN"):
                return PowerMode(mode_id, name)
        return None


def query_mode(runner: Runner) -> PowerMode | None:
    """The current mode, from ``nvpmodel -q``; None without nvpmodel or when it says nothing usable."""
    result = runner(("nvpmodel", "-q"), 3.0)
    if result is None or not result.ok:
        return None
    name = _MODE_NAME.search(result.stdout)
    if name is None:
        return None
    mode_id = _MODE_ID.search(result.stdout)
    return PowerMode(int(mode_id[1]) if mode_id else None, name[1])


def read_modes(root: Path) -> PowerModes:
    """The modes listed in ``/etc/nvpmodel.conf`` (empty when the file is absent)."""
    text = read_text(root, "/etc/nvpmodel.conf") or ""
    default = _CONF_DEFAULT.search(text)
    return PowerModes({int(i): name for i, name in _CONF_MODE.findall(text)}, int(default[1]) if default else None)


def _pinned(folder: Path, low: str, high: str) -> bool | None:
    try:
        return int((folder / low).read_text()) == int((folder / high).read_text())
    except (OSError, ValueError):
        return None


def clocks_state(root: Path) -> str:
    """``on`` (every CPU and the GPU held at their maximum), ``off``, ``partial`` or ``unknown``."""
    cpus = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"))
    gpus = [p for p in sorted((root / "sys/class/devfreq").glob("*")) if p.name.endswith(GPU_DEVFREQ)]
    states = [_pinned(p, "scaling_min_freq", "scaling_max_freq") for p in cpus]
    states += [_pinned(p, "min_freq", "max_freq") for p in gpus]
    known = [s for s in states if s is not None]
    if not known:
        return "unknown"
    if all(known):
        return "on"
    return "partial" if any(known) else "off"
