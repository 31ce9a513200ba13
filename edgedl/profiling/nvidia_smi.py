"""``nvidia-smi`` on machines with a discrete NVIDIA GPU: what the GPU is, and readings during a run."""

from __future__ import annotations

import csv
from typing import Any

from edgedl.device.probe import Runner, run_command
from edgedl.profiling.telemetry import TelemetrySample

#: Fields read during a run, in the order :func:`parse_nvidia_smi` expects them.
SAMPLE_FIELDS = ("clocks.sm", "clocks.mem", "utilization.gpu", "utilization.memory", "temperature.gpu", "power.draw")
#: Fields the report's machine section shows.
INFO_FIELDS = ("name", "driver_version", "memory.total", "clocks.max.sm", "clocks.max.mem", "power.limit",
               "persistence_mode", "pstate")


def sample_command(device: int, interval_ms: int) -> list[str]:
    """nvidia-smi printing one CSV line of :data:`SAMPLE_FIELDS` every ``interval_ms`` for GPU ``device``."""
    return ["nvidia-smi", f"--id={device}", f"--query-gpu={','.join(SAMPLE_FIELDS)}", "--format=csv,noheader,nounits",
            f"--loop-ms={interval_ms}"]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "N/A", "[Not Supported]"
        return None


def parse_nvidia_smi(line: str, t: float) -> TelemetrySample | None:
    """One line of :data:`SAMPLE_FIELDS` read at ``t``; None for a line that is not one.

    The memory clock and load go in the ``emc`` fields (on a Jetson the EMC is the memory controller).
    """
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != len(SAMPLE_FIELDS):
        return None
    sm, mem, load, mem_load, temp, watts = (_number(f) for f in fields)
    if sm is None and load is None:
        return None
    power = {} if watts is None else {"GPU": watts * 1e3}
    return TelemetrySample(t=t, gpu_mhz=sm, emc_mhz=mem, gpu_load=load, emc_load=mem_load,
                           temps_c={} if temp is None else {"gpu": temp}, power_mw=power, total_mw=power.get("GPU"))


def gpu_info(runner: Runner = run_command) -> list[dict[str, Any]]:
    """One dict of :data:`INFO_FIELDS` per GPU; empty without nvidia-smi or when it fails."""
    result = runner(("nvidia-smi", f"--query-gpu={','.join(INFO_FIELDS)}", "--format=csv,noheader"), 5.0)
    if result is None or not result.ok:
        return []
    rows = csv.reader(line for line in result.stdout.splitlines() if line.strip())
    return [dict(zip(INFO_FIELDS, (field.strip() for field in row), strict=False)) for row in rows]
