"""Parse ``tegrastats`` lines from every Jetson generation into :class:`TelemetrySample`.

The format differs between releases (see ``tests/fixtures/tegrastats/``):

- JetPack 4 (Nano, TX2, Xavier): ``RAM 2030/3956MB (lfb 2x4MB) … CPU [12%@1479,off,…] EMC_FREQ 0%@1600
  GR3D_FREQ 0%@921 PLL@27C CPU@29.5C … POM_5V_IN 2118/2118 POM_5V_GPU 0/0``: rails in mW without a unit;
  the ``@MHz`` parts of EMC and GR3D appear only when tegrastats runs as root.
- JetPack 5 and 6: a ``MM-DD-YYYY HH:MM:SS`` timestamp first, rails as ``VDD_IN 5012mW/5012mW``,
  ``GR3D_FREQ 0%@[305,305]`` (one clock per GPC), and on JetPack 6 lower-case sensors (``cpu@45.5C``).
- AGX Orin reports no input rail (``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0``…): its total is the sum.

A sensor that is off reads ``-256C`` and is dropped; ``NC`` rails (not connected) are ignored.
"""

from __future__ import annotations

import re

from edgedl.profiling.telemetry import TelemetrySample, total_power

#: Rails that carry the whole module's input power, in order of preference.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
#: Below this a "temperature" is a sensor that is off (tegrastats prints -256C).
MIN_VALID_C = -40.0

_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@(?:\[([\d,]+)\]|(\d+)))?")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def parse_tegrastats(line: str, t: float) -> TelemetrySample | None:
    """One tegrastats line read at ``t`` (``time.monotonic()``); None for a line that is not a reading."""
    ram = _RAM.search(line)
    if ram is None:
        return None
    sample = TelemetrySample(t=t, ram_used_mb=float(ram[1]))
    cpu = _CPU.search(line)
    if cpu is not None:
        sample.cpu_load, sample.cpu_mhz = _cores(cpu[1], cpu[2])
    emc = _EMC.search(line)
    if emc is not None:
        sample.emc_load, sample.emc_mhz = float(emc[1]), _mhz(emc[2])
    gpu = _GR3D.search(line)
    if gpu is not None:
        clocks = [float(c) for c in (gpu[2] or gpu[3] or "").split(",") if c]
        sample.gpu_load, sample.gpu_mhz = float(gpu[1]), max(clocks) if clocks else None
    sample.temps_c = {name.lower(): float(value) for name, value in _TEMP.findall(line) if float(value) > MIN_VALID_C}
    sample.power_mw = {name: float(now) for name, now, _average in _RAIL.findall(line) if name != "NC"}
    sample.total_mw = total_power(sample.power_mw, INPUT_RAILS)
    return sample


def _cores(text: str, shared_mhz: str | None) -> tuple[list[float | None], list[float | None]]:
    """``12%@1479,off`` (or the old ``12%,off`` with one ``@MHz`` after the bracket) → loads and clocks per core."""
    loads: list[float | None] = []
    clocks: list[float | None] = []
    for entry in text.split(","):
        core = _CORE.fullmatch(entry.strip())
        if core is None:  # "off": the core is powered down
            loads.append(None)
            clocks.append(None)
            continue
        loads.append(float(core[1]))
        clocks.append(_mhz(core[2] or shared_mhz))
    return loads, clocks


def _mhz(text: str | None) -> float | None:
    return None if text is None else float(text)
