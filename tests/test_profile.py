"""``edgedl profile``: statistics, alternating timing, telemetry parsers, energy, throttling, the report and its CLI.

The CPU path runs for real (ONNX Runtime, OpenVINO where installed). TensorRT runs on the fake
module from tests/fake_tensorrt.py, and the Jetson telemetry parsers read hand-written
reproductions of tegrastats output (tests/fixtures/tegrastats/README.md).
"""

from __future__ import annotations

import copy
import json
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import edgedl
from edgedl.cli.profile_command import profile
from edgedl.device.probe import CommandResult
from edgedl.errors import UsageError
from edgedl.profiling.analysis import energy, setup_warnings, throttle_windows, window_warnings
from edgedl.profiling.diff import diff_reports, diff_table
from edgedl.profiling.inputs import resolve_shapes
from edgedl.profiling.layers import check_supported
from edgedl.profiling.machine import jetson_section
from edgedl.profiling.nvidia_smi import gpu_info, parse_nvidia_smi
from edgedl.profiling.sampler import CommandSource, PollSource, TelemetrySampler
from edgedl.profiling.schema import REPORT_SCHEMA, load_report, schema_errors
from edgedl.profiling.settings import ProfileSettings, parse_compare
from edgedl.profiling.stats import summarize, thin
from edgedl.profiling.sysfs import SysfsReader
from edgedl.profiling.tegrastats import parse_tegrastats
from edgedl.profiling.telemetry import SampleBuffer, TelemetrySample
from edgedl.profiling.timing import ModelTimer, measure
from edgedl.runtimes.base import Capabilities
from edgedl.runtimes.onnxruntime.layers import aggregate_trace, ort_layers
from edgedl.runtimes.tensorrt.profiler import tensorrt_layers

FIXTURES = Path(__file__).parent / "fixtures" / "tegrastats"


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(profile, args)
    return result.exit_code, result.stdout, result.stderr


def fixture_samples(name: str, interval_s: float = 0.1) -> list[TelemetrySample]:
    lines = (FIXTURES / name).read_text().splitlines()
    samples = [parse_tegrastats(line, i * interval_s) for i, line in enumerate(lines)]
    assert all(s is not None for s in samples), f"every line of {name} is a reading"
    return samples  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ statistics


def test_statistics_of_known_samples_are_exact() -> None:
    stats = summarize([7.0, 1.0, 10.0, 3.0, 2.0, 9.0, 4.0, 6.0, 5.0, 8.0])
    assert stats.count == 10 and stats.min == 1.0 and stats.max == 10.0
    assert stats.mean == pytest.approx(5.5) and stats.median == pytest.approx(5.5)
    # linear interpolation at rank q/100 * (n - 1): 8.1 → 9.1, 8.55 → 9.55, 8.91 → 9.91
    assert (stats.p90, stats.p95, stats.p99) == pytest.approx((9.1, 9.55, 9.91))
    assert stats.std == pytest.approx(np.sqrt(55 / 6))  # sample std: sum of squares 82.5 over n - 1
    single = summarize([4.0])
    assert single.std == 0.0 and single.p99 == 4.0
    with pytest.raises(ValueError):
        summarize([])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_ordered(samples: list[float]) -> None:
    s = summarize(samples)
    assert s.min <= s.median <= s.p90 <= s.p95 <= s.p99 <= s.max
    slack = 1e-9 * max(1.0, s.max)  # the mean of equal floats can land an ulp outside them
    assert s.min - slack <= s.mean <= s.max + slack and s.std >= 0


def test_thin_keeps_ends_and_spreads_evenly() -> None:
    assert thin([1, 2, 3], 5) == [1, 2, 3]
    kept = thin(list(range(1001)), 11)
    assert kept == list(range(0, 1001, 100))


# ------------------------------------------------------------------------------------------ timing


def test_compare_measures_models_alternately_one_call_each_per_round() -> None:
    calls: list[str] = []

    def timer(name: str, ms: float) -> Any:
        def call() -> float:
            calls.append(name)
            return ms
        return call

    phases = measure([timer("a", 1.0), timer("b", 2.0), timer("c", 3.0)], warmup=2, runs=4)
    assert calls == ["a", "b", "c"] * 6, "round robin: warm-up rounds, then steady rounds, never two in a row"
    assert [len(p.warmup.samples_ms) for p in phases] == [2, 2, 2]
    assert [p.steady.samples_ms for p in phases] == [[1.0] * 4, [2.0] * 4, [3.0] * 4]
    assert all(p.steady.starts == sorted(p.steady.starts) for p in phases)
    calls.clear()
    timed = measure([timer("a", 1.0), timer("b", 1.0)], warmup=0, duration_s=0.02)
    assert len(timed[0].steady.samples_ms) == len(timed[1].steady.samples_ms) > 0, "a round is always finished"
    assert calls[::2] == ["a"] * (len(calls) // 2) and calls[1::2] == ["b"] * (len(calls) // 2)


class _FakeModel:
    """A model whose calls take ``sleep_s``; ``device_ms`` stands in for a GPU backend's CUDA-event time."""

    def __init__(self, device_ms: float | None = None, sleep_s: float = 0.0) -> None:
        self.last_device_ms: float | None = None
        self.device_ms, self.sleep_s = device_ms, sleep_s
        self.profiler: Any = None
        self.attached: list[Any] = []

    def __call__(self, feeds: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.sleep_s)
        self.last_device_ms = self.device_ms
        if self.profiler is not None:  # what TensorRT does with an attached IProfiler after each execution
            for name, ms in (("conv1 + relu1", 0.5), ("fc", 0.25)):
                self.profiler.report_layer_time(name, ms)
        return {}

    def set_profiler(self, profiler: Any) -> None:
        self.profiler = profiler
        self.attached.append(profiler)


def test_timer_uses_cuda_event_time_on_gpu_backends_and_the_host_clock_elsewhere() -> None:
    gpu = ModelTimer(_FakeModel(device_ms=1.25, sleep_s=0.005), {})
    assert gpu() == 1.25 and gpu.clock == "cuda-events"
    cpu = ModelTimer(_FakeModel(sleep_s=0.005), {})
    assert cpu() >= 5.0 and cpu.clock == "host"


def test_tensorrt_layer_profiler_records_reports_and_detaches() -> None:
    """Against a stand-in IProfiler base; the backend's own use of it runs against the fake TensorRT
    (tests/test_runtime_tensorrt.py)."""
    trt = types.SimpleNamespace(IProfiler=object)
    model = _FakeModel()
    layers = tensorrt_layers(trt, lambda: model({}), model.set_profiler, runs=4)
    assert [(layer.name, layer.ms) for layer in layers.layers] == [("conv1 + relu1", 0.5), ("fc", 0.25)]
    assert layers.layers[0].share == pytest.approx(2 / 3) and layers.runs == 4
    assert model.attached[-1] is None, "the profiler is detached afterwards"


def test_per_layer_is_refused_up_front_where_the_backend_has_no_profiler() -> None:
    gpu = types.SimpleNamespace(backend="onnxruntime-gpu", capabilities=Capabilities(device_io=False))
    with pytest.raises(UsageError, match="no profiler for backend onnxruntime-gpu"):
        check_supported(gpu)
    check_supported(types.SimpleNamespace(backend="tensorrt", capabilities=Capabilities(True, "tensorrt-iprofiler")))


# ------------------------------------------------------------------------------------------ inputs


def test_input_shapes_follow_batch_and_shape_options() -> None:
    spec = types.SimpleNamespace(name="images", shape=["batch", 3, 16, 16])
    assert resolve_shapes([spec]) == {"images": (1, 3, 16, 16)}
    assert resolve_shapes([spec], batch=4) == {"images": (4, 3, 16, 16)}
    assert resolve_shapes([spec], shapes={"images": [2, 3, 16, 16]}) == {"images": (2, 3, 16, 16)}
    fixed = types.SimpleNamespace(name="images", shape=[1, 3, "h", "w"])
    for kwargs, message in (({"batch": 2}, "fixed batch of 1"), ({}, "dynamic dim 'h'"),
                            ({"shapes": {"x": [1, 3, 8, 8]}}, "not an input"),
                            ({"shapes": {"images": [1, 3, 8]}}, "has 3 dims"),
                            ({"shapes": {"images": [1, 4, 8, 8]}}, "axis 1 is fixed at 3")):
        with pytest.raises(UsageError, match=message):
            resolve_shapes([fixed], **kwargs)


# ------------------------------------------------------------------------------------------ telemetry parsers


@pytest.mark.parametrize("name, expected", [
    ("nano_jp4.txt", {"cpu_load": [12.0, 3.0, 5.0, 2.0], "cpu_mhz": [1479.0] * 4, "gpu_load": 0.0, "gpu_mhz": None,
                      "emc_load": 0.0, "emc_mhz": None, "ram_used_mb": 2030.0, "total_mw": 2118.0,
                      "power_mw": {"POM_5V_IN": 2118.0, "POM_5V_GPU": 0.0, "POM_5V_CPU": 444.0},
                      "temps_c": {"pll": 27.0, "cpu": 29.5, "pmic": 100.0, "gpu": 27.5, "ao": 35.0, "thermal": 28.5}}),
    ("xavier_nx_jp5.txt", {"cpu_load": [2.0, 1.0, 0.0, 0.0, None, None], "cpu_mhz": [1190.0] * 4 + [None, None],
                           "gpu_load": 0.0, "gpu_mhz": 114.0, "emc_load": 0.0, "emc_mhz": 1600.0, "total_mw": 3968.0,
                           "power_mw": {"VDD_IN": 3968.0, "VDD_CPU_GPU_CV": 478.0, "VDD_SOC": 1195.0},
                           "temps_c": {"aux": 35.0, "cpu": 36.5, "thermal": 35.6, "ao": 35.0, "gpu": 35.0, "pmic": 50.0}}),
    ("orin_nano_jp6.txt", {"cpu_mhz": [1510.0] * 6, "gpu_load": 0.0, "gpu_mhz": 305.0, "emc_mhz": 2133.0, "total_mw": 4948.0,
                           "power_mw": {"VDD_IN": 4948.0, "VDD_CPU_GPU_CV": 556.0, "VDD_SOC": 1428.0},
                           "temps_c": {"cpu": 47.437, "soc2": 46.062, "soc0": 46.75, "gpu": 47.187, "tj": 47.437,
                                       "soc1": 45.468}}),
    ("agx_orin_jp6.txt", {"cpu_mhz": [2201.0] * 12, "gpu_mhz": 1300.0, "emc_mhz": 3199.0, "ram_used_mb": 4207.0,
                          "power_mw": {"VDD_GPU_SOC": 3064.0, "VDD_CPU_CV": 766.0, "VIN_SYS_5V0": 3318.0,
                                       "VDDQ_VDD2_1V8AO": 503.0},
                          "total_mw": 3064.0 + 766.0 + 3318.0 + 503.0,
                          "temps_c": {"cpu": 45.5, "soc2": 42.093, "soc0": 43.406, "gpu": 41.875, "tj": 45.5,
                                      "soc1": 42.531}}),
])
def test_tegrastats_parser_reads_every_jetson_generation(name: str, expected: dict[str, Any]) -> None:
    first = fixture_samples(name)[0]
    for field, value in expected.items():
        assert getattr(first, field) == value, field


def test_tegrastats_parser_details_across_generations() -> None:
    nano = fixture_samples("nano_jp4.txt")
    assert nano[1].cpu_load == [8.0, 4.0, None, None] and nano[1].cpu_max_mhz == 1479.0
    assert (nano[2].gpu_load, nano[2].gpu_mhz, nano[2].emc_mhz) == (99.0, 921.0, 1600.0), "root adds @MHz"
    assert nano[0].hottest_c == 35.0, "the Nano's PMIC@100C placeholder is not a temperature"
    assert fixture_samples("orin_nano_jp6.txt")[2].gpu_mhz == 624.0
    old = parse_tegrastats("RAM 1200/7860MB (lfb 1x4MB) CPU [10%,off,3%,1%]@2035 EMC 5%@1600 GR3D 0%@114", 0.0)
    assert old is not None and old.cpu_load == [10.0, None, 3.0, 1.0] and old.cpu_mhz == [2035.0, None, 2035.0, 2035.0]
    off = parse_tegrastats("RAM 4321/62801MB (lfb 1x4MB) CPU [0%@729] GR3D_FREQ 0%@[0,0] CV0@-256C CPU@44.562C "
                           "tj@44.343C NC 0mW/0mW VDD_GPU_SOC 2340mW/2340mW", 0.0)
    assert off is not None and off.temps_c == {"cpu": 44.562, "tj": 44.343} and off.power_mw == {"VDD_GPU_SOC": 2340.0}
    assert parse_tegrastats("", 0.0) is None and parse_tegrastats("tegrastats: permission denied", 0.0) is None


def test_nvidia_smi_lines_and_gpu_info() -> None:
    sample = parse_nvidia_smi("1980, 2619, 100, 34, 45, 312.45\n", 2.0)
    assert sample is not None and (sample.gpu_mhz, sample.emc_mhz, sample.gpu_load, sample.emc_load) == (1980, 2619, 100, 34)
    assert sample.temps_c == {"gpu": 45.0} and sample.total_mw == pytest.approx(312450.0) and sample.t == 2.0
    partial = parse_nvidia_smi("1410, 1593, 0, 0, 38, [N/A]", 0.0)
    assert partial is not None and partial.total_mw is None and partial.power_mw == {}
    assert parse_nvidia_smi("Failed to initialize NVML", 0.0) is None
    rows = gpu_info(lambda argv, timeout: CommandResult(0, "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB, 1980 MHz, "
                                                           "2619 MHz, 700.00 W, Enabled, P0\n"))
    assert rows == [{"name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15", "memory.total": "81559 MiB",
                     "clocks.max.sm": "1980 MHz", "clocks.max.mem": "2619 MHz", "power.limit": "700.00 W",
                     "persistence_mode": "Enabled", "pstate": "P0"}]
    assert gpu_info(lambda argv, timeout: None) == []


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_sysfs_reader_on_a_jetson_like_tree(tmp_path: Path) -> None:
    _write(tmp_path, "proc/stat", "cpu  10 0 10 80 0\ncpu0 5 0 5 40 0 0 0\ncpu1 5 0 5 40 0 0 0\n")
    for cpu, khz in ((0, 1510400), (1, 729600)):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq", f"{khz}\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "47500\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/type", "CV0-therm\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "-256000\n")
    _write(tmp_path, "sys/class/devfreq/17000000.gpu/cur_freq", "624750000\n")
    _write(tmp_path, "sys/devices/platform/gpu.0/load", "987\n")
    monitor = "sys/class/hwmon/hwmon1"
    for name, text in (("name", "ina3221"), ("in1_label", "VDD_IN"), ("in1_input", "5000"), ("curr1_input", "1000"),
                       ("in2_label", "NC"), ("in2_input", "0"), ("curr2_input", "0")):
        _write(tmp_path, f"{monitor}/{name}", text + "\n")
    read = SysfsReader(tmp_path)
    first = read()
    assert first.cpu_load == [None, None], "loads need two readings"
    _write(tmp_path, "proc/stat", "cpu  30 0 10 160 0\ncpu0 15 0 5 80 0 0 0\ncpu1 5 0 5 80 0 0 0\n")
    second = read()
    assert second.cpu_load == [20.0, 0.0] and second.cpu_mhz == [1510.4, 729.6]
    assert second.temps_c == {"cpu": 47.5} and second.gpu_mhz == pytest.approx(624.75) and second.gpu_load == 98.7
    assert second.power_mw == {"VDD_IN": 5000.0} and second.total_mw == 5000.0


# ------------------------------------------------------------------------------------------ sampler


def test_sampler_reads_a_command_line_by_line_and_stops_it_cleanly() -> None:
    lines = (FIXTURES / "orin_nano_jp6.txt").read_text().splitlines()
    script = textwrap.dedent(f"""
        import sys, time
        for line in {lines!r}:
            print(line, flush=True)
            time.sleep(0.01)
        time.sleep(60)  # like tegrastats: runs until it is stopped
    """)
    source = CommandSource("tegrastats", [sys.executable, "-c", script], parse_tegrastats)
    sampler = TelemetrySampler(source).start()
    deadline = time.monotonic() + 10
    while len(sampler.samples) < len(lines) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    samples = sampler.stop()
    assert time.monotonic() - started < 3 and not sampler.running
    assert source._process is not None and source._process.returncode is not None, "the command was reaped"
    assert [s.gpu_mhz for s in samples] == [305.0, 305.0, 624.0, 624.0, 624.0]
    assert sampler.stop() == samples, "stopping twice is harmless"


def test_sampler_polls_and_memory_stays_bounded() -> None:
    count = iter(range(10**6))
    sampler = TelemetrySampler(PollSource("sysfs", lambda: TelemetrySample(t=float(next(count))), 0.001), capacity=16)
    with sampler:
        time.sleep(0.15)
    kept = [s.t for s in sampler.samples]
    assert 2 <= len(kept) < 16 and kept[0] == 0.0
    assert {b - a for a, b in zip(kept, kept[1:], strict=False)} == {float(sampler.buffer.stride)}, "evenly spaced"
    assert not sampler.running


def test_sample_buffer_halves_and_keeps_covering_the_run() -> None:
    buffer = SampleBuffer(capacity=8)
    for i in range(100):
        buffer.add(TelemetrySample(t=float(i)))
    kept = [s.t for s in buffer.snapshot()]
    assert len(kept) < 8 and kept[0] == 0.0 and kept[-1] >= 100 - buffer.stride
    assert all(b - a == buffer.stride for a, b in zip(kept, kept[1:], strict=False))


# ------------------------------------------------------------------------------------------ analysis


def test_throttling_and_heat_are_marked_with_their_window() -> None:
    samples = fixture_samples("agx_orin_jp6.txt")
    windows = throttle_windows(samples, start=0.0, end=1.0)
    assert [(w.kind, w.signal) for w in windows] == [("hot", "temperature"), ("clock-drop", "gpu")]
    assert [(w.start, w.end) for w in windows] == [pytest.approx((0.4, 0.6)), pytest.approx((0.5, 0.7))]
    assert windows[1].detail == "GPU clock fell from 1300 to 816 MHz"
    warnings = window_warnings(windows, t0=0.0)
    assert "GPU clock fell from 1300 to 816 MHz from 0.5 s to 0.7 s (throttling)" in warnings[1]
    assert throttle_windows(samples, start=0.0, end=0.35) == [], "outside the measured window nothing is flagged"
    assert throttle_windows(fixture_samples("xavier_nx_jp5.txt"), 0.2, 1.0) == []


def test_energy_per_inference_from_known_power_samples() -> None:
    samples = [TelemetrySample(t=float(t), total_mw=mw) for t, mw in ((0, 4000.0), (1, 6000.0), (2, 8000.0))]
    result = energy(samples, 0.0, 2.0, inferences=60, batch=4)
    assert result == pytest.approx({"average_power_w": 6.0, "energy_j": 12.0, "energy_per_inference_mj": 200.0,
                                    "energy_per_item_mj": 50.0})
    short = energy(samples, 0.9, 1.1, inferences=10)
    assert short is not None and short["average_power_w"] == 6.0, "a window shorter than the interval: nearest reading"
    assert energy([TelemetrySample(t=0.0)], 0.0, 1.0, inferences=5) is None


def test_setup_warnings_name_unlocked_clocks_and_a_busy_machine() -> None:
    jetson = {"jetson": {"clocks": "off"}, "cpu": {"governor": "schedutil", "load_average": [0.1, 0.1, 0.1],
                                                  "cores_logical": 8}}
    assert len(setup_warnings(jetson)) == 1 and "sudo jetson_clocks" in setup_warnings(jetson)[0]
    desktop = {"jetson": None, "cpu": {"governor": "powersave", "load_average": [3.9, 2.0, 1.0], "cores_logical": 2}}
    warnings = setup_warnings(desktop)
    assert "'powersave'" in warnings[0] and "load average 3.90 on 2 cores" in warnings[1]
    assert setup_warnings({"jetson": {"clocks": "on"}, "cpu": {"load_average": [0.0], "cores_logical": 4}}) == []


def test_jetson_section_comes_from_edgedl_device(tmp_path: Path) -> None:
    _write(tmp_path, "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic\n")
    _write(tmp_path, "proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\0")
    _write(tmp_path, "proc/device-tree/compatible", "nvidia,p3737-0000+p3701-0005\0nvidia,p3701-0005\0nvidia,tegra234\0")
    for cpu in (0, 1):
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_min_freq", "2201600")
        _write(tmp_path, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_max_freq", "2201600")
    outputs = {"nvpmodel": "NV Power Mode: MAXN\n0\n",
               "dpkg-query": "ii \ttensorrt\t10.3.0.30-1+cuda12.5\nii \tcuda-cudart-12-6\t12.6.68-1\n"}

    def runner(argv: Any, timeout: float) -> CommandResult:
        return CommandResult(0, outputs[argv[0]])

    section = jetson_section(tmp_path, runner)
    assert section is not None
    assert (section["module"], section["l4t"], section["jetpack"]) == ("Jetson AGX Orin 64GB", "36.3.0", "6.0")
    assert section["power_mode"] == {"id": 0, "name": "MAXN"} and section["clocks"] == "on"
    assert (section["tensorrt"], section["cuda"]) == ("10.3.0.30", "12.6.68")
    assert jetson_section(tmp_path / "elsewhere", runner) is None


# ------------------------------------------------------------------------------------------ per-layer


def test_onnxruntime_trace_is_aggregated_per_node_without_the_first_run() -> None:
    def node(name: str, op: str, ts: int, dur: int) -> dict[str, Any]:
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100}, node("conv", "Conv", 10, 900),
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 50}, node("conv", "Conv", 210, 30),
              {"cat": "Node", "name": "conv_fence_before", "ts": 205, "dur": 1}, node("fc", "Gemm", 240, 10),
              {"cat": "Session", "name": "model_run", "ts": 300, "dur": 50}, node("conv", "Conv", 310, 50),
              node("fc", "Gemm", 340, 10)]
    layers = aggregate_trace(events)
    assert layers.runs == 2 and [(x.name, x.op) for x in layers.layers] == [("conv", "Conv"), ("fc", "Gemm")]
    assert [x.ms for x in layers.layers] == pytest.approx([0.04, 0.01]) and layers.total_ms == pytest.approx(0.05)
    assert [x.share for x in layers.layers] == pytest.approx([0.8, 0.2])
    top = layers.as_dict(top=1)
    assert top["layers"] == [{"name": "conv", "op": "Conv", "ms": pytest.approx(0.04), "share": pytest.approx(0.8)}]
    assert top["layer_count"] == 2 and top["total_ms"] == pytest.approx(0.05), "totals and shares cover every layer"


def test_runtime_profilers_name_the_model_layers(template: Path) -> None:
    feeds = {"images": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    ort = ort_layers(template / "model.onnx", feeds, runs=3)
    ops = {layer.op for layer in ort.layers}
    assert ort.runs == 3 and {"Gemm", "GlobalAveragePool"} <= ops and sum(x.share for x in ort.layers) == pytest.approx(1)
    pytest.importorskip("openvino")
    from edgedl.runtimes.openvino.layers import openvino_layers

    ov = openvino_layers(template / "model.onnx", feeds, runs=3, threads=1, inference_precision="<Type: 'float32'>")
    assert ov.profiler == "openvino-perf-counters" and any(layer.op == "Convolution" for layer in ov.layers)
    assert all(layer.ms >= 0 for layer in ov.layers)
    with edgedl.load(template, backend="openvino", precision="fp32") as model:  # the backend's own hook
        assert model.capabilities.layer_profiler == "openvino-perf-counters"
        assert model.profile_layers(feeds, runs=2).profiler == "openvino-perf-counters"


# ------------------------------------------------------------------------------------------ the report and the CLI


@pytest.fixture(scope="module")
def cli_run(template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    """One real CPU profile with every output written (shared by the tests that read them)."""
    out = tmp_path_factory.mktemp("profile")
    code, stdout, stderr = invoke([str(template), "--backend", "onnxruntime", "--precision", "fp32", "--warmup", "3",
                                   "--runs", "40", "--per-layer", "--top", "3", "--json", str(out / "r.json"),
                                   "--markdown", str(out / "r.md"), "--plot", str(out / "r.png")])
    return out, code, stdout, stderr


def test_cli_profiles_a_bundle_on_the_cpu_and_writes_every_output(cli_run: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = cli_run
    assert code == 0, stderr
    assert "Latency in ms (per inference, batch 1)" in stdout and "Cold start" in stdout and "Top 3 of" in stdout
    assert "onnxruntime/fp32 [host]" in stdout and "p99 of 40 runs" in stdout
    report = json.loads((out / "r.json").read_text())
    run = report["runs"][0]
    assert run["latency"]["count"] == 40 and run["warmup"]["count"] == 3 and len(run["samples"]["ms"]) == 40
    assert run["layers"]["profiler"] == "onnxruntime-profiler" and len(run["layers"]["layers"]) == 3
    assert run["cold_start"]["load_ms"] > 0 and run["clock"] == "host" and report["mode"] == "engine"
    assert report["telemetry"]["source"] in ("sysfs", "nvidia-smi", "tegrastats")
    image = cv2.imdecode(np.frombuffer((out / "r.png").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (1000, 1200, 3)
    markdown = (out / "r.md").read_text()
    assert "| run | phase | n | min | mean | median | p90 | p95 | p99 | max | std | per s |" in markdown
    assert "**Top 3 of" in markdown


def test_the_report_validates_and_the_schema_rejects_a_broken_one(cli_run: tuple[Path, int, str, str]) -> None:
    report = json.loads((cli_run[0] / "r.json").read_text())
    assert schema_errors(report) == []
    broken = copy.deepcopy(report)
    del broken["runs"][0]["latency"]["p99"]
    broken["mode"] = "fastest"
    broken["runs"][0]["layers"]["layers"][0]["ms"] = "fast"
    errors = schema_errors(broken)
    assert "$.runs[0].latency: missing 'p99'" in errors and any(e.startswith("$.mode:") for e in errors)
    assert "$.runs[0].layers.layers[0].ms: expected number, got str" in errors
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    assert not list(validator.iter_errors(report)) and len(list(validator.iter_errors(broken))) == 3


def test_compare_runs_models_side_by_side_with_ratios(template: Path, tmp_path: Path) -> None:
    code, stdout, stderr = invoke([str(template), "--compare", "onnxruntime:fp32,onnxruntime:int8", "--warmup", "2",
                                   "--runs", "15", "--no-telemetry", "--json", str(tmp_path / "c.json")])
    assert code == 0, stderr
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["mode"] == "compare" and [r["label"] for r in report["runs"]] == ["onnxruntime/fp32", "onnxruntime/int8"]
    assert report["runs"][0]["ratio_vs_first"] == 1.0 and report["runs"][1]["ratio_vs_first"] > 0
    assert all(r["latency"]["count"] == 15 and r["energy"] is None for r in report["runs"])
    assert "× first" in stdout and "measured alternately" in stdout and report["telemetry"]["source"] is None


def test_source_profiles_the_pipeline_per_stage(template: Path, tmp_path: Path) -> None:
    code, stdout, stderr = invoke([str(template), "--backend", "onnxruntime", "--warmup", "3", "--runs", "12", "--source",
                                   "synthetic://noise?fps=0&frames=100&width=64&height=48", "--json", str(tmp_path / "p.json")])
    assert code == 0, stderr
    report = json.loads((tmp_path / "p.json").read_text())
    run, uri = report["runs"][0], "synthetic://noise?fps=0&frames=100&width=64&height=48"
    assert report["settings"]["source"] == uri and list(run["sources"]) == [uri] and "Sources (" not in stdout
    assert {"preprocess", "infer", "postprocess", "queued"} <= set(run["stages"])
    assert run["latency"]["count"] == 12 and run["frames"]["warmup"] == 3 and run["frames"]["dropped"] == 0
    assert run["stages"]["infer"]["median"] <= run["latency"]["median"], "end to end includes the model"
    assert "Pipeline stages in ms" in stdout


def test_several_sources_are_profiled_each_and_in_total(template: Path, tmp_path: Path) -> None:
    uris = [f"synthetic://shapes?fps=0&frames=30&seed={seed}&width=320&height=240" for seed in (0, 1)]
    code, stdout, stderr = invoke([str(template), "--backend", "onnxruntime", "--warmup", "2", "--runs", "10", "--source",
                                   uris[0], "--source", f"yard={uris[1]}", "--no-telemetry", "--json",
                                   str(tmp_path / "p.json"), "--markdown", str(tmp_path / "p.md")])
    assert code == 0, stderr
    report = json.loads((tmp_path / "p.json").read_text())
    run = report["runs"][0]
    assert report["settings"]["source"] == {uris[0]: uris[0], "yard": uris[1]}
    assert list(run["sources"]) == [uris[0], "yard"] and run["sources"]["yard"]["uri"] == uris[1]
    for part in run["sources"].values():  # --warmup and --runs count each source's frames
        assert part["frames"]["warmup"] == 2 and part["frames"]["steady"] == part["latency"]["count"] == 10
        assert part["frames"]["processed"] == 12 and part["frames"]["dropped"] == 0 and part["fps"] > 0
    assert run["latency"]["count"] == run["frames"]["steady"] == 20 and run["frames"]["processed"] == 24
    assert sum(int(size) * calls for size, calls in run["batch_sizes"].items()) == 24, "each frame in exactly one model call"
    assert schema_errors(report) == []
    broken = copy.deepcopy(report)
    del broken["runs"][0]["sources"]["yard"]["fps"]
    assert schema_errors(broken) == ["$.runs[0].sources.yard: missing 'fps'"]
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    assert not list(validator.iter_errors(report)) and len(list(validator.iter_errors(broken))) == 1
    table = stdout[stdout.index("Sources (onnxruntime/"):]
    assert all(f"\n│ {name}" in table for name in ("synthetic://shapes?fps=0", "yard ", "all ")), table
    markdown = (tmp_path / "p.md").read_text()
    assert f"| yard | {run['sources']['yard']['frames']['captured']} | 12 | 0 | 10 |" in markdown
    assert f"| {uris[0]} | " in markdown and "| all | " in markdown
    calls = ", ".join(f"{size}: {count}" for size, count in run["batch_sizes"].items())
    assert f"model calls by frames per call: {calls} (preprocess and infer time the whole call" in markdown


def test_diff_reads_reports_made_before_per_source_data(template: Path, tmp_path: Path) -> None:
    args = [str(template), "--backend", "onnxruntime", "--warmup", "1", "--runs", "6", "--no-telemetry", "--source",
            "a=synthetic://noise?fps=0&frames=20&width=64&height=48", "--source",
            "b=synthetic://noise?fps=0&frames=20&width=64&height=48&seed=1"]
    for name in ("old", "new"):
        code, _, stderr = invoke([*args, "--json", str(tmp_path / f"{name}.json")])
        assert code == 0, stderr
    new = load_report(tmp_path / "new.json")
    assert {c.what for c in diff_reports(load_report(tmp_path / "old.json"), new).changes} >= {
        "source a latency median", "source b latency p99", "source b fps", "latency median"}
    old = json.loads((tmp_path / "old.json").read_text())
    for run in old["runs"]:  # as reports were written before several sources
        del run["sources"], run["batch_sizes"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    changes = diff_reports(load_report(tmp_path / "old.json"), new).changes
    assert "latency median" in {c.what for c in changes} and not any(c.what.startswith("source ") for c in changes)
    code, stdout, stderr = invoke(["--diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")])
    assert code == 0 and "latency median" in stdout, stderr


def test_tensorrt_on_the_fake_module_is_timed_with_its_cuda_events(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake TensorRT and CUDA driver of tests/fake_tensorrt.py: the GPU code path, no GPU."""
    from fake_tensorrt import install

    install("10.3.0", monkeypatch=monkeypatch)
    from edgedl.profiling import profile as run_profile

    report = run_profile(bundle, backend="tensorrt", precision="fp16", batch=2, runs=5, warmup=1, telemetry=False)
    run = report["runs"][0]
    assert run["clock"] == "cuda-events" and run["cold_start"]["engine_built"] is True
    assert report["input_shapes"] == {"images": [2, 3, 16, 16]} and run["throughput"]["items_per_s"] == pytest.approx(
        2 * run["throughput"]["inferences_per_s"])
    assert schema_errors(report) == []


def test_diff_says_what_got_faster_or_slower(cli_run: tuple[Path, int, str, str], tmp_path: Path) -> None:
    old = json.loads((cli_run[0] / "r.json").read_text())
    new = copy.deepcopy(old)
    run = new["runs"][0]
    run["latency"]["median"] = old["runs"][0]["latency"]["median"] * 0.8
    run["latency"]["p99"] = old["runs"][0]["latency"]["p99"] * 1.02
    run["latency"]["max"] = old["runs"][0]["latency"]["max"] * 1.5
    run["throughput"]["items_per_s"] = old["runs"][0]["throughput"]["items_per_s"] * 1.25
    slowest = run["layers"]["layers"][0]
    slowest["ms"] *= 3
    new["machine"]["cpu"]["model"] = "Some Other CPU"
    diff = diff_reports(old, new)
    verdicts = {(c.what): (round(c.pct or 0, 1), c.verdict) for c in diff.changes}
    assert verdicts["latency median"] == (-20.0, "faster") and verdicts["latency p99"] == (2.0, "within noise")
    assert verdicts["latency max"] == (50.0, "slower") and verdicts["throughput (items/s)"] == (25.0, "faster")
    assert verdicts[f"layer {slowest['name']}"] == (200.0, "slower")
    assert any(note.startswith("CPU: ") and "Some Other CPU" in note for note in diff.context)
    assert "not like for like" in (diff_table(diff).caption or "")
    (tmp_path / "new.json").write_text(json.dumps(new))
    code, stdout, stderr = invoke(["--diff", str(cli_run[0] / "r.json"), str(tmp_path / "new.json"), "--markdown",
                                   str(tmp_path / "d.md"), "--noise", "10"])
    assert code == 0, stderr
    assert "faster" in stdout and "slower" in stdout and "noise threshold 10 %" in stdout
    assert "| onnxruntime/fp32 | latency median |" in (tmp_path / "d.md").read_text()


def test_load_report_refuses_files_that_are_not_reports(tmp_path: Path, cli_run: tuple[Path, int, str, str]) -> None:
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "newer.json").write_text(json.dumps({**json.loads((cli_run[0] / "r.json").read_text()),
                                                     "schema_version": 99}))
    for name, message in (("missing.json", "cannot read the report"), ("other.json", "is not an edgedl profile report"),
                          ("newer.json", "is a version 99 report")):
        with pytest.raises(Exception, match=message) as raised:
            load_report(tmp_path / name)
        assert raised.value.exit_code == 3 and str(tmp_path / name) in str(raised.value)


@pytest.mark.parametrize("args, code, message", [
    (["{missing}"], 5, "no such bundle"),
    (["{bundle}", "--compare", "onnxruntime"], 2, "is not BACKEND:PRECISION"),
    (["{bundle}", "--compare", "warp:fp32,onnxruntime:fp32"], 2, "unknown backend 'warp'"),
    (["{bundle}", "--compare", "onnxruntime:fp32,onnxruntime:fp32"], 2, "two or more different"),
    (["{bundle}", "--runs", "0"], 2, "--runs must be at least 1"),
    (["{bundle}", "--runs", "5", "--duration", "1"], 2, "give one of them"),
    (["{bundle}", "--shape", "pixels=1x3x16x16"], 2, "not an input of the model"),
    (["{bundle}", "--source", "synthetic://noise", "--batch", "2"], 2, "engine-only"),
    (["{bundle}", "--source", "warp://0"], 2, "unknown source scheme 'warp'"),
    (["{bundle}", "--source", "synthetic://noise", "--source", "synthetic://noise"], 2, "given twice"),
    (["{bundle}", "--source", "a=synthetic://noise", "--source", "a=synthetic://shapes"], 2, "source 'a' is given twice"),
    (["{bundle}", "--json", "{tmp}/no/such/folder/r.json"], 8, "does not exist"),
    (["--diff", "{tmp}/absent.json", "{tmp}/absent.json"], 3, "cannot read the report"),
    (["--diff", "{tmp}/garbage.json", "{tmp}/garbage.json"], 3, "is not JSON"),
    (["{bundle}", "--diff", "{tmp}/garbage.json", "{tmp}/garbage.json"], 2, "takes no BUNDLE"),
    ([], 2, "missing BUNDLE"),
])
def test_bad_inputs_give_one_line_and_write_nothing(template: Path, tmp_path: Path, args: list[str], code: int,
                                                    message: str) -> None:
    (tmp_path / "garbage.json").write_text("{not json")
    before = sorted(tmp_path.rglob("*"))
    values = {"bundle": str(template), "missing": str(tmp_path / "missing.edgedl"), "tmp": str(tmp_path)}
    got, stdout, stderr = invoke([a.format(**values) for a in args])
    assert got == code, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("edgedl: error: ") and message in stderr, stderr
    assert sorted(tmp_path.rglob("*")) == before, "nothing written"
    assert not list(template.glob("*.json.tmp"))


def test_compare_refuses_items_that_load_the_same_model(bundle: Path, tmp_path: Path) -> None:
    manifest = json.loads((bundle / "edgedl.json").read_text())
    manifest["validation"]["variants"]["int8"]["speedup_vs_fp32"] = 1.7  # so auto precision takes INT8: a twin
    (bundle / "edgedl.json").write_text(json.dumps(manifest))
    code, _, stderr = invoke([str(bundle), "--compare", "onnxruntime:int8,onnxruntime:auto", "--json",
                              str(tmp_path / "c.json")])
    last = stderr.strip().splitlines()[-1]
    assert code == 2 and last.startswith("edgedl: error: --compare item onnxruntime:auto loads onnxruntime/int8")
    assert "like an earlier item" in last and not (tmp_path / "c.json").exists()


def test_settings_and_compare_specs_are_checked_up_front() -> None:
    assert parse_compare(" ORT:FP32 , openvino:int8") == [("onnxruntime", "fp32"), ("openvino", "int8")]
    assert ProfileSettings(Path("m.edgedl")).check().runs == 500
    with pytest.raises(UsageError, match="cannot be combined with --source"):
        ProfileSettings(Path("m"), source="0", compare=[("onnxruntime", "fp32"), ("openvino", "fp32")]).check()
    assert ProfileSettings(Path("m"), source={"door": "0", "yard": "1"}).check().sources == {"door": "0", "yard": "1"}
    with pytest.raises(UsageError, match="given twice"):
        ProfileSettings(Path("m"), source=["0", "0"]).check()
    for option in ({"warmup": -1}, {"top": 0}, {"batch": 0}, {"duration_s": 0.0}, {"interval_ms": 1}):
        with pytest.raises(UsageError):
            ProfileSettings(Path("m"), **option).check()
