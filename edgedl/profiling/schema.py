"""The profile report's JSON Schema (version 1): the documentation of every field, and the check reports pass.

Times are milliseconds unless a name says otherwise (``_s`` seconds, ``_w`` watts, ``_mw``
milliwatts, ``_mj`` millijoules, ``_mhz``, ``_c`` degrees Celsius); ``t``/``t_s`` values are
seconds since the profile started. Readers refuse a report whose ``schema_version`` they do not know.
A field added within a version is left out of ``required``, so the reports written before it still validate:
``runs[].sources`` and ``runs[].batch_sizes`` (pipeline runs over several sources) came that way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgedl.errors import InputFileError
from edgedl.profiling.stats import STAT_NAMES
from edgedl.profiling.timing import CLOCKS
from edgedl.profiling.validator import validate

SCHEMA_NAME = "edgedl-profile"
#: Bumped when a field changes meaning or goes away (not when one is added); readers refuse reports of another version.
SCHEMA_VERSION = 1

_NUMBER = {"type": "number"}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_STRING_OR_NULL = {"type": ["string", "null"]}
_RANGE = {"type": ["array", "null"], "items": _NUMBER, "description": "[min, max] over the steady state"}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://edgedl.dev/schemas/profile-1.json",
    "title": "edgedl profile report",
    "type": "object",
    "required": ["schema", "schema_version", "created", "mode", "bundle", "batch", "input_shapes", "machine", "software",
                 "settings", "steady_window_s", "runs", "telemetry", "warnings"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "created": {"type": "string", "description": "UTC time the report was made, ISO 8601"},
        "mode": {"enum": ["engine", "pipeline", "compare"],
                 "description": "engine: the model alone on random inputs; pipeline: --source, per stage; "
                                "compare: several backends/precisions measured alternately"},
        "bundle": {"type": "string"},
        "batch": {"type": "integer", "minimum": 1, "description": "items per inference (first dim of the first input)"},
        "input_shapes": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
        "machine": {"$ref": "#/$defs/machine"},
        "software": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "versions of edgedl, Python and the runtimes installed"},
        "settings": {"type": "object", "description": "the options of the run, as given; source: the URI of one "
                                                       "source named by itself, else an object of names to URIs"},
        "steady_window_s": {"type": "array", "items": _NUMBER, "description": "[start, end] of the steady state"},
        "runs": {"type": "array", "items": {"$ref": "#/$defs/run"},
                 "description": "one per model; with --compare the first is the reference of ratio_vs_first"},
        "telemetry": {"$ref": "#/$defs/telemetry"},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
    "$defs": {
        "stats": {
            "type": "object", "additionalProperties": False, "required": ["count", *STAT_NAMES],
            "description": "percentiles interpolate linearly; std is the sample standard deviation",
            "properties": {"count": {"type": "integer", "minimum": 1},
                           **{name: {"type": "number", "minimum": 0} for name in STAT_NAMES}},
        },
        "stats_or_null": {"type": ["object", "null"], "additionalProperties": False, "required": ["count", *STAT_NAMES],
                          "properties": {"count": {"type": "integer", "minimum": 1},
                                         **{name: {"type": "number", "minimum": 0} for name in STAT_NAMES}}},
        "machine": {
            "type": "object", "required": ["hostname", "os", "arch", "cpu", "jetson", "gpus"],
            "properties": {
                "hostname": {"type": "string"}, "os": {"type": "string"}, "arch": {"type": "string"},
                "cpu": {"type": "object", "required": ["model", "cores_logical", "governor", "load_average"],
                        "properties": {"model": {"type": "string"}, "cores_logical": {"type": ["integer", "null"]},
                                       "cores_physical": {"type": ["integer", "null"]}, "governor": _STRING_OR_NULL,
                                       "load_average": {"type": ["array", "null"], "items": _NUMBER}}},
                "jetson": {"type": ["object", "null"], "description": "from edgedl.device; null when not a Jetson",
                           "required": ["module", "l4t", "jetpack", "power_mode", "clocks"],
                           "properties": {"module": {"type": "string"}, "model": {"type": "string"},
                                          "soc": _STRING_OR_NULL, "l4t": _STRING_OR_NULL, "jetpack": _STRING_OR_NULL,
                                          "power_mode": {"type": ["object", "null"]},
                                          "clocks": {"enum": ["on", "off", "partial", "unknown"],
                                                     "description": "jetson_clocks: every clock pinned at its maximum"},
                                          "tensorrt": _STRING_OR_NULL, "cuda": _STRING_OR_NULL}},
                "gpus": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "string"}},
                         "description": "nvidia-smi's view of each discrete GPU"},
            },
        },
        "run": {
            "type": "object", "additionalProperties": False,
            "required": ["label", "backend", "precision", "variant", "clock", "details", "cold_start", "warmup", "latency",
                         "throughput", "samples", "stages", "frames", "layers", "energy", "ratio_vs_first"],
            "properties": {
                "label": {"type": "string", "description": "backend/precision"},
                "backend": {"type": "string"}, "precision": {"type": "string"}, "variant": {"type": "string"},
                "clock": {"enum": list(CLOCKS),
                          "description": "host: time.perf_counter around the call; cuda-events: the backend's GPU time"},
                "details": {"type": "object", "description": "what the runtime reports about itself"},
                "cold_start": {"type": "object", "required": ["load_ms", "first_run_ms"],
                               "properties": {"load_ms": {"type": "number", "minimum": 0,
                                                          "description": "edgedl.load, engine build included"},
                                              "first_run_ms": {"type": "number", "minimum": 0,
                                                               "description": "the first call, on the host clock"},
                                              "engine_built": {"type": ["boolean", "null"]}}},
                "warmup": {"$ref": "#/$defs/stats_or_null"},
                "latency": {"$ref": "#/$defs/stats",
                            "description": "steady state; end to end (capture to result) with --source"},
                "throughput": {"type": "object", "required": ["inferences_per_s", "items_per_s"],
                               "properties": {"inferences_per_s": {"type": "number", "minimum": 0},
                                              "items_per_s": {"type": "number", "minimum": 0}}},
                "samples": {"type": "object", "required": ["total", "ms", "t_s"],
                            "description": "steady-state latencies (at most 5000, evenly spread) and when each ran",
                            "properties": {"total": {"type": "integer", "minimum": 1},
                                           "ms": {"type": "array", "items": _NUMBER},
                                           "t_s": {"type": "array", "items": _NUMBER}}},
                "stages": {"type": ["object", "null"], "additionalProperties": {"$ref": "#/$defs/stats"},
                           "description": "per pipeline stage; 'queued' is latency not spent in any timed stage"},
                "frames": {"$ref": "#/$defs/frames"},
                "sources": {"type": ["object", "null"], "additionalProperties": {"$ref": "#/$defs/source"},
                            "description": "per source of a pipeline run, by the pipeline's name for it (its URI "
                                           "unless named); absent from reports made before it"},
                "batch_sizes": {"type": ["object", "null"], "additionalProperties": {"type": "integer", "minimum": 1},
                                "description": "a pipeline run's model calls by the frames each carried (keys: frames); "
                                               "absent from reports made before it"},
                "layers": {"type": ["object", "null"], "required": ["profiler", "runs", "total_ms", "layers"],
                           "properties": {"profiler": {"enum": ["onnxruntime-profiler", "openvino-perf-counters",
                                                                "tensorrt-iprofiler"]},
                                          "runs": {"type": "integer", "minimum": 1}, "total_ms": _NUMBER,
                                          "layer_count": {"type": "integer", "minimum": 0},
                                          "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}}}},
                "energy": {"type": ["object", "null"], "description": "null without power readings or with --compare",
                           "required": ["average_power_w", "energy_j", "energy_per_inference_mj", "energy_per_item_mj"],
                           "properties": {k: {"type": "number", "minimum": 0} for k in
                                          ("average_power_w", "energy_j", "energy_per_inference_mj", "energy_per_item_mj")}},
                "ratio_vs_first": {"type": ["number", "null"],
                                   "description": "first run's median / this run's median: above 1 is faster"},
            },
        },
        "frames": {"type": ["object", "null"], "required": ["captured", "processed", "dropped"],
                   "description": "warmup: each source's first --warmup frames; steady: the frames measured",
                   "properties": {k: {"type": "integer", "minimum": 0}
                                  for k in ("captured", "processed", "dropped", "warmup", "steady")}},
        "source": {
            "type": "object", "additionalProperties": False, "required": ["uri", "frames", "warmup", "latency", "fps"],
            "properties": {"uri": {"type": "string"}, "frames": {"$ref": "#/$defs/frames"},
                           "warmup": {"$ref": "#/$defs/stats_or_null"},
                           "latency": {"$ref": "#/$defs/stats_or_null",
                                       "description": "capture to result over this source's steady-state frames; null "
                                                      "when it gave none"},
                           "fps": {"type": "number", "minimum": 0, "description": "this source's results per second"}},
        },
        "layer": {"type": "object", "additionalProperties": False, "required": ["name", "op", "ms", "share"],
                  "properties": {"name": {"type": "string"}, "op": {"type": "string"},
                                 "ms": {"type": "number", "minimum": 0, "description": "mean per inference"},
                                 "share": {"type": "number", "minimum": 0, "description": "of all layers' time"}}},
        "telemetry": {
            "type": "object", "additionalProperties": False, "required": ["source", "interval_ms", "summary", "windows",
                                                                          "samples"],
            "properties": {
                "source": {"enum": ["tegrastats", "nvidia-smi", "sysfs", None]},
                "interval_ms": {"type": "integer", "minimum": 1},
                "summary": {"type": "object", "properties": {
                    "cpu_mhz": _RANGE, "gpu_mhz": _RANGE, "emc_mhz": _RANGE, "power_w": _RANGE,
                    "cpu_load_mean": _NUMBER_OR_NULL, "gpu_load_mean": _NUMBER_OR_NULL,
                    "peak_temperature_c": _NUMBER_OR_NULL}},
                "windows": {"type": "array", "items": {
                    "type": "object", "required": ["kind", "signal", "start_s", "end_s", "detail"],
                    "properties": {"kind": {"enum": ["clock-drop", "hot"]}, "signal": {"type": "string"},
                                   "start_s": _NUMBER, "end_s": _NUMBER, "detail": {"type": "string"}}},
                    "description": "where the device throttled or ran hot during the steady state"},
                "samples": {"type": "array", "items": {"$ref": "#/$defs/sample"}},
            },
        },
        "sample": {
            "type": "object", "additionalProperties": False, "required": ["t"],
            "description": "one reading; loads in percent; emc_* is the memory clock (EMC on Jetson, nvidia-smi's mem clock)",
            "properties": {"t": _NUMBER, "cpu_load": {"type": "array", "items": _NUMBER_OR_NULL},
                           "cpu_mhz": {"type": "array", "items": _NUMBER_OR_NULL}, "gpu_load": _NUMBER_OR_NULL,
                           "gpu_mhz": _NUMBER_OR_NULL, "emc_load": _NUMBER_OR_NULL, "emc_mhz": _NUMBER_OR_NULL,
                           "ram_used_mb": _NUMBER_OR_NULL, "temps_c": {"type": "object", "additionalProperties": _NUMBER},
                           "power_mw": {"type": "object", "additionalProperties": _NUMBER},
                           "total_mw": _NUMBER_OR_NULL},
        },
    },
}


def schema_errors(report: Any) -> list[str]:
    """Where ``report`` breaks :data:`REPORT_SCHEMA` (empty when it conforms)."""
    return validate(report, REPORT_SCHEMA)


def load_report(path: Path) -> dict[str, Any]:
    """Read a saved report; an InputFileError naming the file when it is unreadable, not JSON, or not a valid report."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(f"cannot read the report ({exc.strerror or exc})", path=path,
                             fix="pass a report written by edgedl profile --json") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(f"is not JSON ({exc})", path=path, fix="pass a report written by edgedl profile --json") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
        raise InputFileError("is not an edgedl profile report", path=path, fix="pass a report written by edgedl profile --json")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InputFileError(f"is a version {data.get('schema_version')!r} report; this edgedl reads version {SCHEMA_VERSION}",
                             path=path, fix="compare reports made by the same edgedl version (pip install -U edgedl)")
    errors = schema_errors(data)
    if errors:
        more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
        raise InputFileError(f"does not match the report schema ({errors[0]}{more})", path=path,
                             fix="pass a report written by edgedl profile --json, unedited")
    return data
