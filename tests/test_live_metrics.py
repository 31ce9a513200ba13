"""Live metrics (edgedl.live_metrics): pushed and scraped values, read back over loopback from the real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgedl.errors import UsageError
from edgedl.live_metrics import LATENCY_BUCKETS, LiveMetrics
from edgedl.live_metrics.collectors import FPS_WINDOW_S, RateMeter
from edgedl.profiling.sampler import PollSource, TelemetrySampler
from edgedl.profiling.tegrastats import parse_tegrastats
from edgedl.profiling.telemetry import TelemetrySample
from edgedl.sources import open_source

TEGRASTATS = Path(__file__).parent / "fixtures" / "tegrastats"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: LiveMetrics) -> tuple[Samples, dict[str, str]]:
    """Every sample the endpoint serves, keyed by (name, sorted labels), and each family's HELP text."""
    with urllib.request.urlopen(metrics.url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    helps = {}
    for family in text_string_to_metric_families(text):
        helps[family.name] = family.documentation
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, helps


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def metrics() -> Iterator[LiveMetrics]:
    with LiveMetrics(0) as live:
        yield live


def test_pushed_frames_batches_and_events_are_served_with_help(metrics: LiveMetrics) -> None:
    for latency in (0.0015, 0.030, 2.0):
        metrics.frame_processed("cam0", latency, {"preprocess": 0.0008, "infer": 0.012, "postprocess": 0.004})
    metrics.frame_processed("rtsp://door", 0.040, {"infer": 0.012})
    metrics.batch("yolo", 4, 0.018)
    metrics.batch("yolo", 1, 0.006)
    for kind in ("disconnected", "reconnecting", "reconnecting", "reconnected"):
        metrics.event("rtsp://door", kind)

    samples, helps = scrape(metrics)

    assert metrics.url == f"http://127.0.0.1:{metrics.port}/metrics" and metrics.port > 0
    assert value(samples, "edgedl_frames_processed_total", source="cam0") == 3
    assert value(samples, "edgedl_frames_processed_total", source="rtsp://door") == 1
    latency = "edgedl_frame_latency_seconds"
    assert value(samples, f"{latency}_count", source="cam0") == 3
    assert value(samples, f"{latency}_sum", source="cam0") == pytest.approx(2.0315)
    assert [value(samples, f"{latency}_bucket", source="cam0", le=le) for le in ("0.001", "0.002", "0.05", "1.0", "+Inf")] \
        == [0, 1, 2, 2, 3]
    stage = "edgedl_stage_latency_seconds_bucket"
    assert value(samples, stage, source="cam0", stage="preprocess", le="0.001") == 3
    assert value(samples, stage, source="cam0", stage="infer", le="0.01") == 0
    assert value(samples, stage, source="cam0", stage="infer", le="0.02") == 3
    assert value(samples, stage, source="rtsp://door", stage="infer", le="0.02") == 1
    assert ("edgedl_stage_latency_seconds_count", (("source", "rtsp://door"), ("stage", "preprocess"))) not in samples
    assert {key[1][0][1] for key in samples if key[0] == stage} == {str(b) for b in LATENCY_BUCKETS} | {"+Inf"}
    assert value(samples, "edgedl_batch_size_bucket", model="yolo", le="1.0") == 1
    assert value(samples, "edgedl_batch_size_bucket", model="yolo", le="4.0") == 2
    assert value(samples, "edgedl_batch_size_sum", model="yolo") == 5
    assert value(samples, "edgedl_inference_seconds_count", model="yolo") == 2
    assert value(samples, "edgedl_inference_seconds_sum", model="yolo") == pytest.approx(0.024)
    events = "edgedl_source_events_total"
    assert value(samples, events, source="rtsp://door", kind="reconnecting") == 2
    assert value(samples, events, source="rtsp://door", kind="reconnected") == 1
    assert all(helps[name] for name in helps if name.startswith("edgedl_")), "every metric says what it is"


def test_fps_is_processed_frames_per_second_since_start_then_over_the_window() -> None:
    before = time.monotonic()
    with LiveMetrics(0) as live:
        after = time.monotonic()
        for _ in range(10):
            live.frame_processed("cam0", 0.01, {})
        scrape_start = time.monotonic()
        fps = value(scrape(live)[0], "edgedl_fps", source="cam0")
        scrape_end = time.monotonic()
    # Young metrics divide by their age, not by the whole window: no spike, no underestimate.
    assert 10 / min(FPS_WINDOW_S, scrape_end - before) <= fps <= 10 / min(FPS_WINDOW_S, scrape_start - after)

    meter = RateMeter(started=100.0, window_s=5.0)
    for t in (100.5, 101.0, 101.5, 102.0):
        meter.add(t)
    assert meter.rate(now=102.0) == 2.0  # 4 frames in the 2 s since the start
    for t in (106.0, 106.5):
        meter.add(t)
    assert meter.rate(now=106.5) == pytest.approx(3 / 5)  # 102.0, 106.0, 106.5: the last 5 s, (101.5, 106.5]
    assert meter.rate(now=120.0) == 0.0  # a stalled source falls to zero


@dataclass
class Counts:
    captured: int
    dropped: int
    discarded: int


def test_source_counters_are_read_when_scraped() -> None:
    counts = {"cam0": Counts(10, 2, 0)}
    with LiveMetrics(0, sources=lambda: counts, telemetry=lambda: None) as live:
        first, helps = scrape(live)
        counts["cam0"].captured, counts["cam1"] = 25, Counts(3, 0, 1)
        second, _ = scrape(live)
    assert [value(first, f"edgedl_frames_{name}_total", source="cam0") for name in ("captured", "dropped", "discarded")] \
        == [10, 2, 0]
    assert value(second, "edgedl_frames_captured_total", source="cam0") == 25
    assert value(second, "edgedl_frames_discarded_total", source="cam1") == 1
    assert helps["edgedl_frames_dropped"]
    assert not [name for name, _labels in second if "clock" in name or "celsius" in name or "watts" in name], \
        "no telemetry reading, no telemetry gauges"


def test_a_frame_stream_is_a_source_to_count() -> None:
    with open_source("synthetic://shapes?width=32&height=24&fps=0&frames=5") as stream:
        frames = list(stream)
        with LiveMetrics(0, sources=lambda: {"shapes": stream}) as live:
            samples, _ = scrape(live)
    assert len(frames) == 5
    assert value(samples, "edgedl_frames_captured_total", source="shapes") == 5
    assert value(samples, "edgedl_frames_dropped_total", source="shapes") == 0


def test_telemetry_gauges_in_base_units_from_a_tegrastats_reading() -> None:
    line = (TEGRASTATS / "xavier_nx_jp5.txt").read_text().splitlines()[0]
    sample = parse_tegrastats(line, time.monotonic())
    assert sample is not None and None in sample.cpu_mhz, "the fixture has cores that are off"
    with LiveMetrics(0, telemetry=lambda: sample) as live:
        samples, helps = scrape(live)
    assert value(samples, "edgedl_gpu_clock_hertz") == 114e6
    assert value(samples, "edgedl_emc_clock_hertz") == 1600e6
    assert value(samples, "edgedl_cpu_clock_hertz", core="0") == 1190e6
    assert ("edgedl_cpu_clock_hertz", (("core", "4"),)) not in samples, "an off core has no clock"
    assert value(samples, "edgedl_cpu_load_ratio", core="0") == pytest.approx(0.02)
    assert value(samples, "edgedl_temperature_celsius", sensor="gpu") == 35.0
    assert value(samples, "edgedl_temperature_celsius", sensor="cpu") == 36.5
    assert value(samples, "edgedl_power_watts", rail="VDD_SOC") == pytest.approx(1.195)
    assert value(samples, "edgedl_power_input_watts") == pytest.approx(3.968)
    assert value(samples, "edgedl_ram_used_bytes") == 2393 * 2**20
    assert helps["edgedl_temperature_celsius"]


def test_a_sampler_gives_its_newest_reading_while_it_runs() -> None:
    ticks = iter(range(1_000_000))
    sampler = TelemetrySampler(PollSource("fake", lambda: TelemetrySample(t=float(next(ticks))), 0.001), capacity=2)
    assert sampler.current() is None, "nothing before it starts"
    with sampler:
        deadline = time.monotonic() + 5
        while (current := sampler.current()) is None or current.t < 50:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        later = sampler.current()
        assert later is not None and later.t >= current.t
    assert sampler.current() is None, "a stopped sampler's last reading is not current"


def test_two_instances_do_not_collide() -> None:
    with LiveMetrics(0) as a, LiveMetrics(0) as b:
        a.frame_processed("cam0", 0.01, {"infer": 0.005})
        b.event("cam0", "opened")
        from_a, _ = scrape(a)
        from_b, _ = scrape(b)
    assert a.port != b.port
    assert value(from_a, "edgedl_frames_processed_total", source="cam0") == 1
    assert not [key for key in from_b if key[0] == "edgedl_frames_processed_total"]
    assert value(from_b, "edgedl_source_events_total", source="cam0", kind="opened") == 1
    assert not [key for key in from_a if key[0] == "edgedl_source_events_total"]


def test_a_port_in_use_is_one_line_with_the_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError) as error:
            LiveMetrics(port)
    assert str(error.value) == f"metrics port {port} is in use — fix: pick another --metrics-port or stop what listens there"
    assert error.value.exit_code != 0


def test_close_frees_the_port() -> None:
    live = LiveMetrics(0)
    port = live.port
    scrape(live)
    live.close()
    live.close()  # harmless
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(live.url, timeout=5)
    with LiveMetrics(port) as again:
        assert again.port == port and scrape(again)[1]


@pytest.mark.parametrize("port", [-1, 65536, True, "9100", 91.0])
def test_a_port_out_of_range_is_refused_before_anything_listens(port: object) -> None:
    with pytest.raises(UsageError, match="metrics port must be a whole number from 0 to 65535") as error:
        LiveMetrics(port)  # type: ignore[arg-type]
    assert "\n" not in str(error.value) and error.value.fix


def _first_unprivileged_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


@pytest.mark.skipif(not hasattr(os, "fork") or _first_unprivileged_port() == 0, reason="every port is open to every user")
def test_a_privileged_port_is_refused_with_the_fix() -> None:
    def attempt() -> str:
        try:
            LiveMetrics(1).close()
        except UsageError as exc:
            return str(exc)
        return "listened"

    if os.geteuid() != 0:
        message = attempt()
    else:  # root may bind anything: try as nobody, in a forked child that has every module it needs already loaded
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.setuid(65534)
                os.write(write, attempt().encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            message = pipe.read()
        os.waitpid(child, 0)
        if not message:
            pytest.skip("root cannot drop its privileges here")
    assert message == ("metrics port 1 is not permitted for this user (ports below 1024 need root)"
                       " — fix: pick a --metrics-port from 1024 up, e.g. 9100")


def test_importing_edgedl_does_not_load_the_prometheus_client() -> None:
    code = "import sys, edgedl, edgedl.pipeline; print('prometheus_client' in sys.modules)"
    with tempfile.TemporaryDirectory() as cwd:  # a neutral folder: the installed edgedl, not ./edgedl
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=cwd).stdout
    assert out.strip() == "False", "live metrics are imported only when asked for"
