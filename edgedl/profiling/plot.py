"""``--plot F.png``: the latency histogram and the latency / clock / temperature timeline, drawn with OpenCV.

OpenCV is a core dependency of edgedl and matplotlib is not, so the plot is drawn with OpenCV's
primitives: no optional dependency, and it works on a Jetson image that has no plotting stack.
Throttling and heat windows are shaded red on both timelines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedl.profiling.telemetry import TelemetrySample

WIDTH, HEIGHT = 1200, 1000
LEFT, RIGHT = 90, 90
#: Run colours (BGR), in run order.
COLORS = ((180, 105, 30), (20, 130, 245), (60, 160, 60), (40, 40, 200), (150, 80, 150))
INK, GRID, WINDOW = (40, 40, 40), (225, 225, 225), (200, 200, 255)
FONT_SCALE = 0.45
BINS = 40


@dataclass(frozen=True)
class Panel:
    """A plotting area in pixels and the data range it shows."""

    top: int
    bottom: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def x(self, value: float) -> int:
        low, high = self.x_range
        return int(LEFT + (value - low) / ((high - low) or 1.0) * (WIDTH - LEFT - RIGHT))

    def y(self, value: float, y_range: tuple[float, float] | None = None) -> int:
        low, high = y_range or self.y_range
        return int(self.bottom - (value - low) / ((high - low) or 1.0) * (self.bottom - self.top))


def _text(img: np.ndarray, text: str, at: tuple[int, int], color: tuple[int, int, int] = INK, scale: float = FONT_SCALE,
          right: bool = False) -> None:
    import cv2

    width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
    x = at[0] - width if right else at[0]
    cv2.putText(img, text, (x, at[1]), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    return list(np.linspace(low, high, count))


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _frame(img: np.ndarray, panel: Panel, title: str, x_label: str, y_label: str) -> None:
    import cv2

    for value in _ticks(*panel.y_range):
        y = panel.y(value)
        cv2.line(img, (LEFT, y), (WIDTH - RIGHT, y), GRID, 1)
        _text(img, _label(value), (LEFT - 6, y + 4), right=True)
    for value in _ticks(*panel.x_range):
        x = panel.x(value)
        cv2.line(img, (x, panel.bottom), (x, panel.bottom + 4), INK, 1)
        _text(img, _label(value), (x - 12, panel.bottom + 18))
    cv2.rectangle(img, (LEFT, panel.top), (WIDTH - RIGHT, panel.bottom), INK, 1)
    _text(img, title, (LEFT, panel.top - 10), scale=0.55)
    _text(img, x_label, (WIDTH - RIGHT, panel.bottom + 36), right=True)
    _text(img, y_label, (8, panel.top - 10))


def _histogram(img: np.ndarray, runs: Sequence[dict[str, Any]], top: int, bottom: int) -> None:
    import cv2

    series = [np.asarray(run["samples"]["ms"], dtype=np.float64) for run in runs]
    everything = np.concatenate(series)
    # Beyond the 99.5th percentile the bins would be spent on a few outliers; they are counted in the title instead.
    low, high = float(everything.min()), float(np.percentile(everything, 99.5))
    high = high if high > low else low + 1e-3
    edges = np.linspace(low, high, BINS + 1)
    counts = [np.histogram(np.clip(s, low, high), edges)[0] for s in series]
    panel = Panel(top, bottom, (low, high), (0.0, float(max(c.max() for c in counts)) * 1.05 or 1.0))
    outliers = int((everything > high).sum())
    _frame(img, panel, "Latency histogram (steady state)" + (f", {outliers} above {high:.3g} ms" if outliers else ""),
           "ms", "runs")
    for index, (run, count) in enumerate(zip(runs, counts, strict=True)):
        color = COLORS[index % len(COLORS)]
        for left, right, n in zip(edges[:-1], edges[1:], count, strict=True):
            if n == 0:
                continue
            corners = (panel.x(left) + 1, panel.y(n)), (panel.x(right) - 1, panel.bottom)
            if len(runs) == 1:
                cv2.rectangle(img, *corners, color, -1)
            else:  # outlines, so overlapping runs stay readable
                cv2.rectangle(img, *corners, color, 1)
        _text(img, run["label"], (WIDTH - RIGHT - 220, top + 20 + 18 * index), color)


def _shade(img: np.ndarray, panel: Panel, windows: Sequence[dict[str, Any]]) -> None:
    import cv2

    for window in windows:
        x0, x1 = panel.x(window["start_s"]), panel.x(window["end_s"])
        cv2.rectangle(img, (x0, panel.top + 1), (max(x1, x0 + 2), panel.bottom - 1), WINDOW, -1)


def _latency_timeline(img: np.ndarray, runs: Sequence[dict[str, Any]], windows: Sequence[dict[str, Any]],
                      x_range: tuple[float, float], top: int, bottom: int) -> None:
    import cv2

    everything = np.concatenate([np.asarray(run["samples"]["ms"], dtype=np.float64) for run in runs])
    panel = Panel(top, bottom, x_range, (0.0, float(np.percentile(everything, 99.5)) * 1.1 or 1.0))
    _shade(img, panel, windows)
    _frame(img, panel, "Latency over the run (red: throttling or heat)", "seconds since start", "ms")
    for index, run in enumerate(runs):
        color = COLORS[index % len(COLORS)]
        for t, ms in zip(run["samples"]["t_s"], run["samples"]["ms"], strict=True):
            cv2.circle(img, (panel.x(t), max(panel.top, panel.y(ms))), 1, color, -1)


#: Telemetry lines the last panel can show: label, unit, how to read it from a sample.
_SIGNALS: tuple[tuple[str, str, Callable[[TelemetrySample], float | None]], ...] = (
    ("GPU clock", "MHz", lambda s: s.gpu_mhz),
    ("CPU clock", "MHz", lambda s: s.cpu_max_mhz),
    ("hottest sensor", "C", lambda s: s.hottest_c),
    ("CPU load", "%", lambda s: s.cpu_load_mean),
)


def _telemetry_timeline(img: np.ndarray, samples: Sequence[dict[str, Any]], windows: Sequence[dict[str, Any]],
                        x_range: tuple[float, float], top: int, bottom: int) -> None:
    import cv2

    readings = [TelemetrySample.from_dict(s) for s in samples]
    present = []
    for label, unit, read in _SIGNALS:
        points = [(s.t, v) for s in readings if (v := read(s)) is not None]
        if points and not (unit == "MHz" and any(u == "MHz" for _, u, _ in present)):
            present.append((label, unit, points))
    shown = present[:2]  # one series on each axis
    panel = Panel(top, bottom, x_range, (0.0, 1.0))
    _shade(img, panel, windows)
    if not shown:
        _frame(img, panel, "Device telemetry", "seconds since start", "")
        _text(img, "no clock, temperature or load readings on this machine", (LEFT + 20, (top + bottom) // 2))
        return
    ranges = [(0.0, max(v for _, v in points) * 1.1 or 1.0) for _, _, points in shown]
    panel = Panel(top, bottom, x_range, ranges[0])
    _frame(img, panel, "Device telemetry: " + ", ".join(f"{label} ({unit})" for label, unit, _ in shown),
           "seconds since start", shown[0][1])
    for index, ((label, unit, points), y_range) in enumerate(zip(shown, ranges, strict=True)):
        color = COLORS[(index + 2) % len(COLORS)]
        line = np.array([[panel.x(t), panel.y(v, y_range)] for t, v in points], np.int32)
        cv2.polylines(img, [line], False, color, 2, cv2.LINE_AA)
        _text(img, label, (LEFT + 10 + 200 * index, top + 18), color)
        if index == 1:
            for value in _ticks(*y_range):
                _text(img, f"{_label(value)} {unit}", (WIDTH - RIGHT + 6, panel.y(value, y_range) + 4), color)


def render_png(report: dict[str, Any]) -> bytes:
    """The plot of ``report`` as PNG bytes."""
    import cv2

    img = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    runs = report["runs"]
    samples, windows = report["telemetry"]["samples"], report["telemetry"]["windows"]
    _text(img, f"edgedl profile: {report['bundle']} ({', '.join(r['label'] for r in runs)})", (LEFT, 28), scale=0.6)
    last = max([t for run in runs for t in run["samples"]["t_s"]] + [s["t"] for s in samples] + [1e-3])
    _histogram(img, runs, 70, 330)
    _latency_timeline(img, runs, windows, (0.0, last), 400, 660)
    _telemetry_timeline(img, samples, windows, (0.0, last), 730, 950)
    ok, encoded = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("OpenCV could not encode the plot as PNG")
    return encoded.tobytes()
