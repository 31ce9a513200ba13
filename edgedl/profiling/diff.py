"""``edgedl profile --diff old.json new.json``: what got faster or slower, per statistic, stage and layer.

A change smaller than the noise threshold (5 % by default) is reported as within noise: run-to-run
variation on a shared or unlocked machine easily reaches a few percent. Differences in the machine,
its setup or the settings are listed first, since they can explain a change on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgedl.profiling.stats import STAT_NAMES
from edgedl.profiling.tables import TextTable, fmt_ms

NOISE_PCT = 5.0
#: Layer rows shown at most (the largest changes in milliseconds first).
MAX_LAYER_ROWS = 20
#: What a kind of figure is called when it moves the good or the bad way.
_WORDS = {"time": ("faster", "slower"), "rate": ("faster", "slower"), "energy": ("less energy", "more energy")}


@dataclass(frozen=True)
class Change:
    """One figure in both reports. ``kind``: ``time`` and ``energy`` are better lower, ``rate`` higher."""

    run: str
    what: str
    old: float
    new: float
    kind: str
    noise_pct: float

    @property
    def pct(self) -> float | None:
        """Change in percent of the old value (None when the old value is 0)."""
        return None if self.old == 0 else (self.new - self.old) / self.old * 100

    @property
    def verdict(self) -> str:
        """``faster``/``slower`` (``less energy``/``more energy``), or ``within noise``."""
        pct = self.pct
        if pct is None or abs(pct) < self.noise_pct:
            return "within noise"
        better = pct > 0 if self.kind == "rate" else pct < 0
        good, bad = _WORDS[self.kind]
        return good if better else bad


@dataclass
class ReportDiff:
    """Every change, and what differs between the two runs' machines and settings."""

    changes: list[Change]
    context: list[str]
    noise_pct: float


def _context(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    def pick(report: dict[str, Any]) -> dict[str, Any]:
        jetson = report["machine"].get("jetson") or {}
        return {"CPU": report["machine"]["cpu"].get("model"), "Jetson module": jetson.get("module"),
                "power mode": (jetson.get("power_mode") or {}).get("name"), "jetson_clocks": jetson.get("clocks"),
                "CPU governor": report["machine"]["cpu"].get("governor"), "mode": report["mode"],
                "batch": report["batch"], "input shapes": report["input_shapes"],
                **{f"{name} version": version for name, version in report["software"].items()}}

    before, after = pick(old), pick(new)
    return [f"{key}: {before.get(key)} → {after.get(key)}" for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)]


def diff_reports(old: dict[str, Any], new: dict[str, Any], noise_pct: float = NOISE_PCT) -> ReportDiff:
    """Compare two reports run by run (matched by label: backend/precision)."""
    changes: list[Change] = []
    context = _context(old, new)
    old_runs = {run["label"]: run for run in old["runs"]}
    new_runs = {run["label"]: run for run in new["runs"]}
    for label in sorted(set(old_runs) ^ set(new_runs)):
        context.append(f"run {label} is only in the {'old' if label in old_runs else 'new'} report")
    for label in [label for label in new_runs if label in old_runs]:
        changes += _run_changes(label, old_runs[label], new_runs[label], noise_pct)
        changes += _layer_changes(label, old_runs[label], new_runs[label], noise_pct)
    return ReportDiff(changes, context, noise_pct)


def _run_changes(label: str, a: dict[str, Any], b: dict[str, Any], noise_pct: float) -> list[Change]:
    """Latency statistics, throughput, cold start, stages and energy of one run in both reports."""
    figures: list[tuple[str, Any, Any, str]] = [(f"latency {n}", a["latency"][n], b["latency"][n], "time") for n in STAT_NAMES]
    figures += [("throughput (items/s)", a["throughput"]["items_per_s"], b["throughput"]["items_per_s"], "rate"),
                ("cold start: load", a["cold_start"]["load_ms"], b["cold_start"]["load_ms"], "time"),
                ("cold start: first inference", a["cold_start"]["first_run_ms"], b["cold_start"]["first_run_ms"], "time")]
    stages_a, stages_b = a["stages"] or {}, b["stages"] or {}
    figures += [(f"stage {stage} {n}", stages_a[stage][n], stages_b[stage][n], "time")
                for stage in stages_b if stage in stages_a for n in ("median", "p99")]
    figures += _source_figures(a.get("sources") or {}, b.get("sources") or {})
    if a["energy"] and b["energy"]:
        figures.append(("energy per inference (mJ)", a["energy"]["energy_per_inference_mj"],
                        b["energy"]["energy_per_inference_mj"], "energy"))
    return [Change(label, what, float(x), float(y), kind, noise_pct) for what, x, y, kind in figures
            if x is not None and y is not None]


def _source_figures(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    """Latency and frames per second of each source in both runs (reports made before per-source data have none); a
    single source's figures are the run's own, so they are left out."""
    both = [name for name in b if name in a] if len(b) > 1 else []
    figures: list[tuple[str, Any, Any, str]] = [
        (f"source {name} latency {n}", a[name]["latency"][n], b[name]["latency"][n], "time")
        for name in both if a[name]["latency"] and b[name]["latency"] for n in ("median", "p99")]
    return figures + [(f"source {name} fps", a[name]["fps"], b[name]["fps"], "rate") for name in both]


def _layer_changes(label: str, a: dict[str, Any], b: dict[str, Any], noise_pct: float) -> list[Change]:
    """Layers in both reports that moved beyond the noise, largest moves first."""
    if not a["layers"] or not b["layers"]:
        return []
    before = {layer["name"]: layer["ms"] for layer in a["layers"]["layers"]}
    moved = [Change(label, f"layer {layer['name']}", before[layer["name"]], layer["ms"], "time", noise_pct)
             for layer in b["layers"]["layers"] if layer["name"] in before]
    moved = [c for c in moved if c.verdict != "within noise"]
    moved.sort(key=lambda c: -abs(c.new - c.old))
    return moved[:MAX_LAYER_ROWS]


def diff_table(diff: ReportDiff) -> TextTable:
    """One row per change: old, new, percent and verdict."""
    table = TextTable(f"Changes, old → new (noise threshold {diff.noise_pct:g} %)",
                      ["run", "figure", "old", "new", "change", "verdict"], align=["l", "l", "r", "r", "r", "l"])
    for change in diff.changes:
        pct = change.pct
        number = fmt_ms if change.kind != "rate" else (lambda v: f"{v:,.1f}")
        table.rows.append([change.run, change.what, number(change.old), number(change.new),
                           "-" if pct is None else f"{pct:+.1f}%", change.verdict])
    if diff.context:
        table.caption = "not like for like: " + "; ".join(diff.context)
    return table
