"""What the telemetry says about a run: throttling windows, average power, energy per inference, and warnings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgedl.profiling.telemetry import TelemetrySample

#: A clock more than this fraction below its peak in the run counts as a drop.
CLOCK_DROP = 0.10
#: A sensor at or above this is flagged: Jetson modules start thermal throttling in the high 90s C,
#: so a run this hot is at the edge of it (and a desktop CPU or GPU is at its limit too).
HOT_C = 90.0
#: Fewer steady-state runs than this and the p99 is little more than the maximum.
MIN_RUNS_FOR_P99 = 100

_CLOCKS: tuple[tuple[str, Callable[[TelemetrySample], float | None]], ...] = (
    ("gpu", lambda s: s.gpu_mhz), ("cpu", lambda s: s.cpu_max_mhz), ("emc", lambda s: s.emc_mhz))


@dataclass(frozen=True)
class Window:
    """A stretch of the run (``time.monotonic()`` bounds) where the device throttled or ran hot."""

    kind: str  # "clock-drop" or "hot"
    signal: str  # "gpu", "cpu", "emc" or "temperature"
    start: float
    end: float
    detail: str

    def as_dict(self, t0: float) -> dict[str, Any]:
        return {"kind": self.kind, "signal": self.signal, "start_s": round(self.start - t0, 4),
                "end_s": round(self.end - t0, 4), "detail": self.detail}


def _spans(points: list[tuple[float, float, bool]]) -> list[list[tuple[float, float]]]:
    """Consecutive flagged points, grouped."""
    spans: list[list[tuple[float, float]]] = []
    previous = False
    for t, value, flagged in points:
        if flagged:
            if not previous:
                spans.append([])
            spans[-1].append((t, value))
        previous = flagged
    return spans


def throttle_windows(samples: Sequence[TelemetrySample], start: float, end: float, drop: float = CLOCK_DROP,
                     hot_c: float = HOT_C) -> list[Window]:
    """Windows within ``[start, end]`` where a clock fell more than ``drop`` below its peak, or a sensor reached ``hot_c``.

    The peak is the highest reading of that clock during the window examined, so with clocks
    locked (jetson_clocks) any drop is throttling; with clocks unlocked a drop can also be the
    governor lowering an idle clock, which the "clocks not locked" warning already covers.
    """
    during = [s for s in samples if start <= s.t <= end]
    windows = []
    for name, read in _CLOCKS:
        values = [(s.t, v) for s in during if (v := read(s)) is not None]
        if not values:
            continue
        peak = max(v for _, v in values)
        for span in _spans([(t, v, v < (1 - drop) * peak) for t, v in values]):
            low = min(v for _, v in span)
            windows.append(Window("clock-drop", name, span[0][0], span[-1][0],
                                  f"{name.upper()} clock fell from {peak:.0f} to {low:.0f} MHz"))
    temps = [(s.t, v) for s in during if (v := s.hottest_c) is not None]
    for span in _spans([(t, v, v >= hot_c) for t, v in temps]):
        windows.append(Window("hot", "temperature", span[0][0], span[-1][0],
                              f"a sensor reached {max(v for _, v in span):.1f} C (flagged from {hot_c:g} C)"))
    return sorted(windows, key=lambda w: w.start)


def average_power_w(samples: Sequence[TelemetrySample], start: float, end: float) -> float | None:
    """Time-weighted mean of the total power over ``[start, end]`` (trapezoids between readings), in watts.

    A window shorter than the sampling interval takes the reading nearest its middle; None without power readings.
    """
    readings = [(s.t, s.total_mw) for s in samples if s.total_mw is not None]
    inside = [(t, mw) for t, mw in readings if start <= t <= end]
    if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
        area = sum((t2 - t1) * (a + b) / 2 for (t1, a), (t2, b) in zip(inside, inside[1:], strict=False))
        return area / (inside[-1][0] - inside[0][0]) / 1e3
    if not readings:
        return None
    middle = (start + end) / 2
    return min(readings, key=lambda r: abs(r[0] - middle))[1] / 1e3


def energy(samples: Sequence[TelemetrySample], start: float, end: float, inferences: int,
           batch: int = 1) -> dict[str, float] | None:
    """Average power and energy per inference (and per input item at ``batch``) over a window; None without power."""
    watts = average_power_w(samples, start, end)
    if watts is None or inferences < 1:
        return None
    joules = watts * (end - start)
    per_inference_mj = joules * 1e3 / inferences
    return {"average_power_w": watts, "energy_j": joules, "energy_per_inference_mj": per_inference_mj,
            "energy_per_item_mj": per_inference_mj / batch}


def setup_warnings(machine: dict[str, Any]) -> list[str]:
    """Warnings about how the machine was set up: clocks not locked, other work running."""
    warnings = []
    jetson = machine.get("jetson")
    cpu = machine.get("cpu", {})
    if jetson is not None and jetson.get("clocks") != "on":
        warnings.append(f"clocks are not locked (jetson_clocks {jetson.get('clocks')}): they follow the load, so "
                        "latency varies more; run sudo jetson_clocks for steady numbers")
    elif jetson is None and cpu.get("governor") not in (None, "performance"):
        warnings.append(f"the CPU frequency governor is {cpu['governor']!r}, not 'performance': clocks follow the load; "
                        "for steady numbers: sudo cpupower frequency-set -g performance")
    load, cores = cpu.get("load_average"), cpu.get("cores_logical")
    if load and cores and load[0] > 0.5 * cores:
        warnings.append(f"the machine was busy before the run (load average {load[0]:.2f} on {cores} cores): "
                        "other work shares it, so times are noisier")
    return warnings


def few_runs_warning(label: str, runs: int) -> list[str]:
    """A warning when too few steady-state runs were made for a tail percentile to mean something."""
    if runs >= MIN_RUNS_FOR_P99:
        return []
    return [f"{label}: p99 of {runs} runs is little more than the maximum; use --runs 1000 or --duration for tail latency"]


def window_warnings(windows: Sequence[Window], t0: float) -> list[str]:
    """One warning per throttling or heat window, with its time since ``t0``."""
    return [f"{window.detail} from {window.start - t0:.1f} s to {window.end - t0:.1f} s "
            f"({'throttling' if window.kind == 'clock-drop' else 'near thermal throttling'}): latency in that window "
            "is not steady state" for window in windows]
