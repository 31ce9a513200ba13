"""A report as plain tables and lines, drawn once and rendered twice: rich on the terminal, markdown for an issue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgedl.profiling.stats import STAT_NAMES


@dataclass
class TextTable:
    """A titled table of strings; ``align`` holds ``l`` or ``r`` per column."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    align: list[str] = field(default_factory=list)
    caption: str | None = None


def fmt_ms(value: float | None) -> str:
    """Milliseconds with about four significant digits."""
    if value is None:
        return "-"
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _rate(value: float) -> str:
    return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def latency_table(report: dict[str, Any]) -> TextTable:
    """Warm-up and steady-state statistics of every run, throughput, and speed against the first run."""
    what = "capture → result, per frame" if report["mode"] == "pipeline" else f"per inference, batch {report['batch']}"
    compared = len(report["runs"]) > 1
    headers = ["run", "phase", "n", *STAT_NAMES, "per s"] + (["× first"] if compared else [])
    table = TextTable(f"Latency in ms ({what})", headers, align=["l", "l"] + ["r"] * (len(headers) - 2))
    for run in report["runs"]:
        label = f"{run['label']} [{run['clock']}]"
        for phase, stats in (("warm-up", run["warmup"]), ("steady", run["latency"])):
            if stats is None:
                continue
            rate = _rate(run["throughput"]["items_per_s"]) if phase == "steady" else ""
            ratio = f"{run['ratio_vs_first']:.2f}x" if phase == "steady" and run["ratio_vs_first"] else ""
            table.rows.append([label, phase, str(stats["count"]), *(fmt_ms(stats[n]) for n in STAT_NAMES), rate]
                              + ([ratio] if compared else []))
    if compared:
        table.caption = "measured alternately, one call each per round; × first = first run's median / this median"
    return table


def cold_start_table(report: dict[str, Any]) -> TextTable:
    """Load time (engine build included) and the first inference, apart from everything after."""
    table = TextTable("Cold start", ["run", "load ms", "first inference ms", "engine"], align=["l", "r", "r", "l"])
    for run in report["runs"]:
        cold = run["cold_start"]
        built = {True: "built now", False: "from cache", None: "-"}[cold.get("engine_built")]
        table.rows.append([run["label"], fmt_ms(cold["load_ms"]), fmt_ms(cold["first_run_ms"]), built])
    return table


def stage_table(run: dict[str, Any]) -> TextTable:
    """Per-stage statistics of a pipeline run, and the batch sizes the model ran."""
    frames = run["frames"]
    batches = run.get("batch_sizes") or {}  # absent from reports made before it
    calls = ", ".join(f"{size}: {count}" for size, count in batches.items())
    table = TextTable(f"Pipeline stages in ms ({run['label']})", ["stage", "n", "median", "p90", "p99", "max", "mean"],
                      align=["l"] + ["r"] * 6,
                      caption=f"frames: {frames['captured']} captured, {frames['processed']} processed, "
                              f"{frames['dropped']} dropped; {frames.get('warmup', 0)} warm-up frames left out; "
                              "queued: time not spent in any timed stage"
                              + (f"; model calls by frames per call: {calls} (preprocess and infer time the whole "
                                 "call each frame went through)" if calls else ""))
    for name, stats in run["stages"].items():
        table.rows.append([name, str(stats["count"]), *(fmt_ms(stats[k]) for k in ("median", "p90", "p99", "max", "mean"))])
    table.rows.append(["end to end", str(run["latency"]["count"]),
                       *(fmt_ms(run["latency"][k]) for k in ("median", "p90", "p99", "max", "mean"))])
    return table


def source_table(run: dict[str, Any]) -> TextTable:
    """Each source of a pipeline run and all of them together: frames, capture-to-result latency, results per second."""
    stats = ("median", "p90", "p99", "max")
    table = TextTable(f"Sources ({run['label']}), latency in ms",
                      ["source", "captured", "processed", "dropped", "n", *stats, "fps"], align=["l"] + ["r"] * 9,
                      caption="n: steady-state frames (each source's warm-up left out); fps: results per second")

    def row(name: str, frames: dict[str, int], latency: dict[str, float] | None, fps: float) -> list[str]:
        counts = (str(frames[k]) for k in ("captured", "processed", "dropped", "steady"))
        return [name, *counts, *(fmt_ms(latency[k] if latency else None) for k in stats), _rate(fps)]

    for name, part in run["sources"].items():
        table.rows.append(row(name, part["frames"], part["latency"], part["fps"]))
    table.rows.append(row("all", run["frames"], run["latency"], run["throughput"]["items_per_s"]))
    return table


def layer_table(run: dict[str, Any]) -> TextTable:
    """The slowest layers of one run with their share of all layers' time."""
    layers = run["layers"]
    table = TextTable(f"Top {len(layers['layers'])} of {layers.get('layer_count', len(layers['layers']))} layers "
                      f"({run['label']})", ["#", "layer", "op", "ms", "share"], align=["r", "l", "l", "r", "r"],
                      caption=f"{layers['profiler']}, mean of {layers['runs']} profiled runs; all layers: "
                              f"{fmt_ms(layers['total_ms'])} ms (profiling adds overhead)")
    for index, layer in enumerate(layers["layers"], 1):
        table.rows.append([str(index), layer["name"], layer["op"] or "-", fmt_ms(layer["ms"]), f"{layer['share']:.1%}"])
    return table


def report_tables(report: dict[str, Any]) -> list[TextTable]:
    """Every table of a report, in reading order."""
    tables = [latency_table(report), cold_start_table(report)]
    tables += [stage_table(run) for run in report["runs"] if run["stages"]]
    tables += [source_table(run) for run in report["runs"] if len(run.get("sources") or {}) > 1]
    tables += [layer_table(run) for run in report["runs"] if run["layers"]]
    return tables


def device_lines(report: dict[str, Any]) -> list[str]:
    """The machine, its setup, what the telemetry saw, and energy per inference."""
    machine, cpu = report["machine"], report["machine"]["cpu"]
    lines = [f"machine: {machine['hostname']} ({machine['arch']}), {cpu['model']}, {cpu['cores_logical']} cores, "
             f"governor {cpu['governor'] or 'unknown'}, load average {_joined(cpu['load_average'])}"]
    jetson = machine.get("jetson")
    if jetson:
        mode = jetson.get("power_mode") or {}
        lines.append(f"jetson: {jetson['module']}, L4T {jetson['l4t'] or '?'} (JetPack {jetson['jetpack'] or '?'}), "
                     f"TensorRT {jetson.get('tensorrt') or '?'}, CUDA {jetson.get('cuda') or '?'}, nvpmodel "
                     f"{mode.get('name', '?')}, jetson_clocks {jetson['clocks']}")
    for gpu in machine.get("gpus", []):
        lines.append(f"gpu: {gpu.get('name', '?')}, driver {gpu.get('driver_version', '?')}, max SM clock "
                     f"{gpu.get('clocks.max.sm', '?')}, power limit {gpu.get('power.limit', '?')}")
    telemetry = report["telemetry"]
    summary = telemetry["summary"]
    if telemetry["source"] is None:
        lines.append("telemetry: off")
    else:
        seen = [f"{name} {_span(summary.get(key), unit)}" for name, key, unit in
                (("CPU", "cpu_mhz", "MHz"), ("GPU", "gpu_mhz", "MHz"), ("EMC", "emc_mhz", "MHz"), ("power", "power_w", "W"))
                if summary.get(key)]
        if summary.get("peak_temperature_c") is not None:
            seen.append(f"peak {summary['peak_temperature_c']:.1f} C")
        if summary.get("cpu_load_mean") is not None:
            seen.append(f"CPU load {summary['cpu_load_mean']:.0f}% mean")
        lines.append(f"telemetry ({telemetry['source']}, {len(telemetry['samples'])} samples): "
                     + (", ".join(seen) if seen else "nothing readable here"))
    for run in report["runs"]:
        if run["energy"]:
            e = run["energy"]
            lines.append(f"energy ({run['label']}): {e['average_power_w']:.2f} W average, "
                         f"{e['energy_per_inference_mj']:.2f} mJ per inference ({e['energy_per_item_mj']:.2f} mJ per item)")
    return lines


def _joined(values: list[float] | None) -> str:
    return "?" if not values else " ".join(f"{v:g}" for v in values)


def _span(values: list[float], unit: str) -> str:
    low, high = values
    return f"{low:g} {unit}" if low == high else f"{low:g}-{high:g} {unit}"
