"""Telemetry read straight from the kernel, where neither tegrastats nor nvidia-smi is there.

CPU load per core from ``/proc/stat`` (the change since the previous reading), CPU clocks from
cpufreq, temperatures from the thermal zones, and on a Jetson the GPU clock and load (devfreq,
``gpu.0/load``) and the INA3221 power monitors' rails (hwmon). Every path is read under ``root``
so a fixture tree can stand in for a machine; whatever is missing stays empty.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from edgedl.device.power import GPU_DEVFREQ
from edgedl.device.probe import read_text
from edgedl.profiling.telemetry import TelemetrySample, total_power

#: Where Jetson kernels put the GPU's load in per mille (JetPack 4/5, then 6).
GPU_LOAD_FILES = ("sys/devices/gpu.0/load", "sys/devices/platform/gpu.0/load")
INPUT_RAILS = ("VDD_IN",)
_ZONE_SUFFIX = re.compile(r"[-_]?therm(al)?$", re.IGNORECASE)


def _number(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


class SysfsReader:
    """Reads one :class:`TelemetrySample` per call; loads are averaged since the previous call."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self._previous: dict[str, tuple[int, int]] = {}

    def __call__(self) -> TelemetrySample:
        sample = TelemetrySample(t=time.monotonic())
        sample.cpu_load = self._cpu_loads()
        sample.cpu_mhz = self._cpu_clocks(len(sample.cpu_load))
        sample.temps_c = self._temperatures()
        sample.gpu_mhz, sample.gpu_load = self._gpu()
        sample.power_mw = self._rails()
        sample.total_mw = total_power(sample.power_mw, INPUT_RAILS)
        return sample

    def _cpu_loads(self) -> list[float | None]:
        """Busy percent per core since the last reading (None on the first reading: there is no interval yet)."""
        loads: list[float | None] = []
        for line in (read_text(self.root, "/proc/stat") or "").splitlines():
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            ticks = [int(f) for f in fields]
            idle, total = ticks[3] + (ticks[4] if len(ticks) > 4 else 0), sum(ticks)
            before = self._previous.get(name)
            self._previous[name] = (idle, total)
            if before is None or total == before[1]:
                loads.append(None)
            else:
                loads.append(round(100.0 * (1 - (idle - before[0]) / (total - before[1])), 1))
        return loads

    def _cpu_clocks(self, cores: int) -> list[float | None]:
        clocks: list[float | None] = []
        for index in range(cores):
            khz = _number(self.root / f"sys/devices/system/cpu/cpu{index}/cpufreq/scaling_cur_freq")
            clocks.append(None if khz is None else khz / 1e3)
        return clocks if any(c is not None for c in clocks) else []

    def _temperatures(self) -> dict[str, float]:
        temps = {}
        for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*")):
            kind, milli = read_text(zone, "type"), _number(zone / "temp")
            if kind and milli is not None and milli > -40_000:
                temps[_ZONE_SUFFIX.sub("", kind.strip()).lower()] = milli / 1e3
        return temps

    def _gpu(self) -> tuple[float | None, float | None]:
        gpus = [p for p in sorted((self.root / "sys/class/devfreq").glob("*")) if p.name.endswith(GPU_DEVFREQ)]
        hz = _number(gpus[0] / "cur_freq") if gpus else None
        load = next((v for v in (_number(self.root / f) for f in GPU_LOAD_FILES) if v is not None), None)
        return (None if hz is None else hz / 1e6), (None if load is None else load / 10.0)

    def _rails(self) -> dict[str, float]:
        """mW per INA3221 channel: ``inN_label``, ``inN_input`` (mV) and ``currN_input`` (mA)."""
        rails = {}
        for monitor in sorted((self.root / "sys/class/hwmon").glob("hwmon*")):
            if (read_text(monitor, "name") or "").strip() != "ina3221":
                continue
            for label_file in sorted(monitor.glob("in*_label")):
                channel = label_file.name[2:].split("_")[0]
                label = (read_text(monitor, label_file.name) or "").strip()
                mv, ma = _number(monitor / f"in{channel}_input"), _number(monitor / f"curr{channel}_input")
                if label and label != "NC" and mv is not None and ma is not None:
                    rails[label] = mv * ma / 1e3
        return rails
