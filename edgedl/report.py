"""Human-readable views of a manifest: the validation table and the bundle summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from edgedl.manifest import Manifest


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def share_text(share: Any) -> str:
    """``42/42 (100%)``: a variant's convolutions and matrix products that run in INT8, of all of them."""
    try:
        return f"{int(share['int8_nodes'])}/{int(share['compute_nodes'])} ({float(share['share']):.0%})"
    except (KeyError, TypeError, ValueError):  # absent (an FP16 variant, an older bundle) or altered
        return "-"


def validation_table(manifest: Manifest) -> Table | None:
    """Each variant against FP32: worst output's agreement, latency and speed-up."""
    validation = manifest.validation
    if not validation.get("variants"):
        return None
    gate = validation["gate"]
    detections = f", detections ≥ {gate['min_detections']}" if "min_detections" in gate else ""
    table = Table(title=f"Validation against FP32 on {validation.get('samples')} held-out samples "
                        f"(gate: cosine ≥ {gate['min_cosine']}, top-1 ≥ {gate['min_top1']}{detections})",
                  caption="cosine*: the worst of the whole output and each feature row (box and score rows apart); "
                          "detections: the lower of recall and precision against FP32's detections; INT8 convs: "
                          "convolutions and matrix products that run in INT8")
    for column in ("variant", "scheme", "cosine*", "max |err|", "mean |err|", "top-1", "detections", "CPU ms", "× FP32",
                   "kept in float", "INT8 convs"):
        table.add_column(column, justify="left" if column in ("variant", "scheme") else "right")
    table.add_row("fp32", "-", "1", "0", "0", "1", "1", _fmt(validation["latency_ms"]["fp32"], 3), "1.00", "-", "-")
    for key, entry in validation["variants"].items():
        outputs = entry["outputs"].values()
        worst = min(min(o["cosine"], o.get("feature_cosine", 1.0)) for o in outputs)
        top1 = [o["top1_agreement"] for o in outputs if "top1_agreement" in o]
        found = [min(o["detection_recall"], o["detection_precision"]) for o in outputs if "detection_recall" in o]
        kept = entry.get("excluded_nodes", entry.get("kept_fp32_nodes", []))
        label = f" ({entry['label']})" if entry.get("label", "int8") != "int8" else ""
        table.add_row(key + label, entry.get("scheme", "-"), _fmt(worst), _fmt(max(o["max_abs_error"] for o in outputs)),
                      _fmt(max(o["mean_abs_error"] for o in outputs)), _fmt(min(top1)) if top1 else "-",
                      _fmt(min(found)) if found else "-", _fmt(entry["latency_ms"], 3),
                      f"{entry['speedup_vs_fp32']:.2f}", str(len(kept)), share_text(entry.get("int8_share")))
    return table


def candidates_table(manifest: Manifest) -> Table | None:
    """The INT8 schemes timed on this machine and why the winner won."""
    candidates = manifest.validation.get("candidates")
    if not candidates:
        return None
    table = Table(title="INT8 schemes timed on this machine (fastest passing one kept)")
    for column in ("scheme", "CPU ms", "× FP32", "gate", "kept in float"):
        table.add_column(column)
    chosen = manifest.variants.get("int8")
    for c in candidates:
        mark = " ← chosen" if chosen and c["scheme"] == chosen.details.get("scheme") and \
            c["excluded_nodes"] == manifest.validation["variants"]["int8"]["excluded_nodes"] else ""
        table.add_row(c["scheme"] + mark, _fmt(c["latency_ms"], 3), f"{c['speedup_vs_fp32']:.2f}",
                      "pass" if c["passed"] else f"fail: {c['reason']}", str(len(c["excluded_nodes"])))
    return table


def recovery_table(manifest: Manifest) -> Table | None:
    """What each accuracy-recovery technique bought each INT8 variant before any layer was kept in float."""
    rows = [(key, step) for key, entry in manifest.validation.get("variants", {}).items()
            for step in entry.get("recovery") or []]
    if not rows:
        return None
    table = Table(title="INT8 accuracy recovered before keeping layers in float (kept where it brings the gate closer)",
                  caption="shortfall: how far the variant is from full agreement with FP32 (1 - its worst gate measure)")
    for column in ("variant", "technique", "shortfall before", "after", "kept", "what it did", "s"):
        table.add_column(column, justify="left" if column in ("variant", "technique", "kept", "what it did") else "right")
    for key, step in rows:
        if "skipped" in step:
            table.add_row(key, step["technique"], "-", "-", "skipped", step["skipped"], "-")
            continue
        did = "; ".join(f"{k.replace('_', ' ')} " + (", ".join(f"{a} {b}" for a, b in v.items()) if isinstance(v, dict)
                                                      else str(v)) for k, v in (step.get("details") or {}).items())
        table.add_row(key, step["technique"], _fmt(step["shortfall_before"]), _fmt(step["shortfall_after"]),
                      ("yes, passes" if step["passed"] else "yes") if step["kept"] else "no", did or "-",
                      _fmt(step["seconds"], 3))
    return table


def summary_table(manifest: Manifest, sizes: dict[str, int]) -> Table:
    """What the bundle holds."""
    table = Table(title=f"{manifest.name} (edgedl bundle, schema {manifest.schema_version})", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    src = manifest.source
    table.add_row("source", f"{src.get('file')} ({src.get('format')}, sha256 {str(src.get('sha256'))[:12]}…)")
    table.add_row("task", manifest.task + (f" ({len(manifest.labels)} labels)" if manifest.labels else ""))
    for t in manifest.inputs:
        table.add_row("input", f"{t.name} {t.dtype} {t.shape} {t.layout or ''}")
    for t in manifest.outputs:
        table.add_row("output", f"{t.name} {t.dtype} {t.shape}")
    if manifest.preprocess is not None:
        p = manifest.preprocess
        table.add_row("preprocess", f"{p.resize} to {p.width}x{p.height}, {p.color}, x*{p.scale:.6g}, mean {list(p.mean)}, "
                                    f"std {list(p.std)}, pad {p.pad_value}, {p.layout} {p.dtype}")
    table.add_row("precisions", ", ".join(manifest.precisions))
    for key, v in manifest.variants.items():
        size = sizes.get(key)
        share = v.details.get("int8_share")
        float_part = v.details.get("float_precision")
        table.add_row(f"variant {key}", f"{v.file} ({v.details.get('label', v.precision)}, {v.target}"
                      + (f", {size / 1e6:.2f} MB" if size is not None else "")
                      + (f", convolutions/matmuls in INT8: {share_text(share)}" if share else "")
                      + (f", float part {float_part}" if float_part else "") + ")")
    cal = manifest.calibration
    if cal:
        table.add_row("calibration", f"{cal.get('method')} on {cal.get('calibration_samples')} samples from "
                      f"{cal.get('kind')} {cal.get('source', '')}, {cal.get('holdout_samples')} held out, seed {cal.get('seed')}")
        views = cal.get("holdout_views")
        if isinstance(views, dict) and views:
            table.add_row("held-out views", ", ".join(f"{n} {view}" for view, n in views.items())
                          + f" of {len(cal.get('holdout_files') or [])} held-out frame(s), never calibration frames")
        converted = cal.get("converted_to_8bit_bgr")
        if isinstance(converted, dict) and converted:
            table.add_row("calibration images", ", ".join(f"{n} {form}" for form, n in converted.items())
                          + " converted to 8-bit BGR (as OpenCV's IMREAD_COLOR decodes them)")
    return table


def print_manifest(manifest: Manifest, sizes: dict[str, int], console: Console | None = None) -> None:
    """Print the summary, the validation and the candidate tables."""
    console = console or Console()
    console.print(summary_table(manifest, sizes))
    for build in (validation_table, recovery_table, candidates_table):
        try:
            table = build(manifest)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            # The validation record is data from the file, not code: an altered one is reported, not a crash.
            console.print(f"[yellow]the manifest's {build.__name__.removesuffix('_table')} record is malformed "
                          "(an altered edgedl.json?); re-run edgedl convert to rebuild it[/yellow]")
            continue
        if table is not None:
            console.print(table)
