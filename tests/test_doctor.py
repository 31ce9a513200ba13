"""edgedl.device and `edgedl doctor`: Jetson detection and every check, against the hand-written device trees in
tests/fixtures/jetson (see its README) and recorded command outputs, plus one run on this machine as it is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgedl.device import checks_media
from edgedl.device.cameras import find_cameras
from edgedl.device.checks_runtimes import tensorrt_advice
from edgedl.device.doctor import missing_error, parse_require, render, run_checks, to_json
from edgedl.device.jetson import detect_jetson
from edgedl.device.l4t import L4TRelease, parse_core_package, parse_nv_tegra_release
from edgedl.device.memory import read_memory
from edgedl.device.packages import installed_packages
from edgedl.device.power import clocks_state, query_mode, read_modes
from edgedl.device.probe import TIMEOUT_STATUS, CommandResult, run_command
from edgedl.device.python_env import PythonEnv
from edgedl.device.report import Context
from edgedl.errors import MissingDependencyError, UsageError

FIXTURES = Path(__file__).parent / "fixtures" / "jetson"
GENERATIONS = ["nano-jp4", "xavier-nx-jp5", "orin-nano-jp6", "agx-orin-jp6", "x86-desktop"]
#: A Jetson venv made from the system Python 3.10 without --system-site-packages: the classic mistake.
ISOLATED_VENV = PythonEnv("3.10", "/opt/edgedl/venv/bin/python", "/opt/edgedl/venv", in_venv=True, system_site=False,
                          system_interpreter=True)


def recorded(folder: Path, calls: list[Sequence[str]] | None = None):
    """A runner answering from ``folder/commands/<program>.txt``; a missing file is a program that is not installed."""

    def run(argv: Sequence[str], timeout: float) -> CommandResult | None:
        if calls is not None:
            calls.append(tuple(argv))
        output = folder / "commands" / f"{Path(argv[0]).name}.txt"
        return CommandResult(0, output.read_text()) if output.exists() else None

    return run


def root(name: str) -> Path:
    return FIXTURES / name / "root"


def check(name: str, require: str | None = None, python: PythonEnv = ISOLATED_VENV):
    return run_checks(require, root(name), runner=recorded(FIXTURES / name), python=python)


def item(report, label: str):
    return next(i for s in report.sections for i in s.items if i.label == label)


# ---- detection ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "module", "soc", "l4t", "jetpack", "mode", "clocks", "tensorrt"), [
    ("nano-jp4", "Jetson Nano (developer kit module)", "tegra210", "32.7.1", "4.6.1", "MAXN", "off", "8.2.1.8"),
    ("xavier-nx-jp5", "Jetson Xavier NX (developer kit module)", "tegra194", "35.3.1", "5.1.1", "MODE_20W_6CORE", "on",
     "8.5.2.2"),
    ("orin-nano-jp6", "Jetson Orin Nano 8GB (developer kit module)", "tegra234", "36.3.0", "6.0", "15W", "off", "8.6.2.3"),
    ("agx-orin-jp6", "Jetson AGX Orin 64GB", "tegra234", "36.4.3", "6.2", "MODE_30W", "partial", "10.3.0.30"),
])
def test_detect_jetson_generations(name, module, soc, l4t, jetpack, mode, clocks, tensorrt):
    info = detect_jetson(root(name), recorded(FIXTURES / name))
    assert info is not None
    assert (info.module, info.soc, str(info.l4t), info.jetpack) == (module, soc, l4t, jetpack)
    assert info.model.startswith("NVIDIA Jetson") and "\0" not in info.model
    assert info.power_mode is not None and info.power_mode.name == mode
    assert info.clocks == clocks
    assert info.library("TensorRT") == tensorrt


def test_x86_desktop_is_not_a_jetson():
    assert detect_jetson(root("x86-desktop"), recorded(FIXTURES / "x86-desktop")) is None


def test_jetpack_without_meta_package_comes_from_the_l4t_table():
    info = detect_jetson(root("agx-orin-jp6"), recorded(FIXTURES / "agx-orin-jp6"))
    assert "nvidia-jetpack" not in info.packages and info.jetpack == "6.2"
    assert info.library("CUDA") == "12.6.68" and info.library("cuDNN") == "9.3.0.75" and info.library("OpenCV") is None


def test_l4t_release_parsing_and_jetpack_mapping():
    first = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 2025"
    assert parse_nv_tegra_release(first) == L4TRelease(36, 4, 3)
    assert parse_nv_tegra_release("garbage") is None
    assert L4TRelease(35, 4, 1).jetpack == "5.1.2"
    assert L4TRelease(36, 9, 9).jetpack == "6.x"          # unknown release: its line, never a guessed minor
    assert L4TRelease(99, 0, 0).jetpack is None
    assert parse_core_package("35.3.1-20230319081403") == L4TRelease(35, 3, 1)


def test_container_without_release_file_reads_the_core_package(tmp_path):
    tree = shutil.copytree(root("orin-nano-jp6"), tmp_path / "root")
    (tree / "etc/nv_tegra_release").unlink()
    info = detect_jetson(tree, recorded(FIXTURES / "orin-nano-jp6"))
    assert info is not None and str(info.l4t) == "36.3.0"


def test_third_party_carrier_is_named_by_its_module_part_number(tmp_path):
    tree = tmp_path / "root"
    (tree / "proc/device-tree").mkdir(parents=True)
    (tree / "proc/device-tree/model").write_bytes(b"Seeed reComputer J4012\0")
    (tree / "proc/device-tree/compatible").write_bytes(b"seeed,recomputer+p3767-0000\0nvidia,p3767-0000\0nvidia,tegra234\0")
    info = detect_jetson(tree, lambda argv, timeout: None)
    assert info is not None and info.module == "Jetson Orin NX 16GB" and info.family == "Orin"
    assert info.l4t is None and info.power_mode is None and info.clocks == "unknown"


def test_nvpmodel_output_variants():
    def answer(text: str, code: int = 0):
        return lambda argv, timeout: CommandResult(code, text)

    warned = query_mode(answer("NVPM WARN: fan mode is not set!\nNV Fan Mode:quiet\nNV Power Mode: MAXN_SUPER\n2\n"))
    assert (warned.id, warned.name) == (2, "MAXN_SUPER")
    assert query_mode(answer("NV Power Mode: 15W\n")).id is None
    assert query_mode(answer("", 1)) is None
    assert query_mode(lambda argv, timeout: None) is None
    modes = read_modes(root("agx-orin-jp6"))
    assert modes.modes == {0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_50W"} and modes.default == 2
    assert read_modes(root("xavier-nx-jp5")).fastest() is None      # Xavier NX has no MAXN mode


def test_clocks_state_without_sysfs_is_unknown(tmp_path):
    assert clocks_state(tmp_path) == "unknown"


def test_memory_and_swap():
    nano = read_memory(root("nano-jp4"))
    assert nano.total == 4059712 * 1024 and nano.swap_total == nano.swap_free == 2029840 * 1024
    assert read_memory(root("agx-orin-jp6")).swap_total == 0


def test_memory_unreadable_or_incomplete(tmp_path):
    assert read_memory(tmp_path) is None
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 1000 kB\n")
    assert read_memory(tmp_path) is None


def test_cameras_csi_numbering_and_uvc_metadata_nodes(tmp_path):
    for n, name, index in [(0, "vi-output, imx219 9-0010", 0), (1, "HD Pro Webcam C920", 0), (2, "HD Pro Webcam C920", 1),
                           (10, "vi-output, imx477 10-001a", 0)]:
        (tmp_path / "dev").mkdir(exist_ok=True)
        (tmp_path / f"dev/video{n}").touch()
        sysfs = tmp_path / f"sys/class/video4linux/video{n}"
        sysfs.mkdir(parents=True)
        (sysfs / "name").write_text(name + "\n")
        (sysfs / "index").write_text(f"{index}\n")
    cameras = find_cameras(tmp_path)
    assert [(c.device, c.kind, c.uri) for c in cameras] == [
        ("/dev/video0", "csi", "csi://0"), ("/dev/video1", "v4l2", "/dev/video1"), ("/dev/video10", "csi", "csi://1")]


def test_dpkg_listing_keeps_only_installed_packages():
    packages = installed_packages(recorded(FIXTURES / "nano-jp4"))
    assert packages["nvidia-l4t-core"] == "32.7.1-20220219090432" and "nvidia-l4t-oldstuff" not in packages
    assert installed_packages(lambda argv, timeout: None) == {}


def test_run_command_missing_program_and_timeout():
    assert run_command(["edgedl-no-such-program-xyz"]) is None
    start = time.perf_counter()
    result = run_command([sys.executable, "-c", "import time; time.sleep(10)"], timeout=0.5)
    assert result.returncode == TIMEOUT_STATUS and "timed out" in result.stderr
    assert time.perf_counter() - start < 5
    assert run_command([sys.executable, "-c", "print('hi')"]).stdout.strip() == "hi"


# ---- TensorRT advice ------------------------------------------------------------------------------------------------

def test_tensorrt_hidden_from_an_isolated_venv():
    status, problem, fix = tensorrt_advice(ISOLATED_VENV, {"3.10": Path("/usr/lib/python3.10/dist-packages")}, None)
    assert status == "fail" and "does not see" in problem
    assert "/usr/bin/python3.10 -m venv --system-site-packages /opt/edgedl/venv" in fix
    assert "jetson/link-tensorrt.sh /opt/edgedl/venv" in fix


def test_tensorrt_with_a_non_system_interpreter():
    pyenv = PythonEnv("3.10", "/home/me/.pyenv/versions/3.10.14/bin/python", "/home/me/.pyenv/versions/3.10.14",
                      in_venv=False, system_site=True, system_interpreter=False)
    status, problem, fix = tensorrt_advice(pyenv, {"3.10": Path("/usr/lib/python3.10/dist-packages")}, None)
    assert status == "fail" and "does not search" in problem and fix.startswith("use /usr/bin/python3.10")


def test_tensorrt_built_for_another_python_on_jetpack5_points_to_the_container():
    xavier = detect_jetson(root("xavier-nx-jp5"), recorded(FIXTURES / "xavier-nx-jp5"))
    status, problem, fix = tensorrt_advice(ISOLATED_VENV, {"3.8": Path("/usr/lib/python3.8/dist-packages")}, xavier)
    assert "built for Python 3.8" in problem and "Dockerfile.jp5" in fix


def test_tensorrt_not_installed_on_a_jetson_or_elsewhere():
    agx = detect_jetson(root("agx-orin-jp6"), recorded(FIXTURES / "agx-orin-jp6"))
    assert tensorrt_advice(ISOLATED_VENV, {}, agx) == (
        "fail", "JetPack's TensorRT Python bindings are not installed", "sudo apt-get install python3-libnvinfer")
    status, _, fix = tensorrt_advice(ISOLATED_VENV, {}, None)
    assert status == "info" and "tensorrt" in fix


def test_tensorrt_import_is_tried_in_a_child_of_this_interpreter(monkeypatch):
    monkeypatch.setattr("edgedl.device.checks_runtimes.module_origin", lambda name: "/usr/lib/python3.10/dist-packages/x")
    calls: list[Sequence[str]] = []

    def runner(argv, timeout):
        calls.append(argv)
        if "tensorrt" in " ".join(argv):
            return CommandResult(1, "", "Traceback…\nImportError: numpy.core.multiarray failed to import")
        return None

    report = run_checks("tensorrt", root("x86-desktop"), runner=runner, python=ISOLATED_VENV)
    assert any(argv[0] == ISOLATED_VENV.executable and "import sys, tensorrt" in argv[2] for argv in calls)
    assert not report.capabilities["tensorrt"].available and "numpy<2" in report.capabilities["tensorrt"].fix

    def works(argv, timeout):
        return CommandResult(0, "10.3.0.30") if "tensorrt" in " ".join(argv) else None

    report = run_checks("tensorrt", root("x86-desktop"), runner=works, python=ISOLATED_VENV)
    assert report.capabilities["tensorrt"].available and report.missing == []


def test_a_usable_cuda_device_is_described(monkeypatch):
    from edgedl.runtimes.cuda import memory as cuda_memory

    class Driver:
        def device_info(self, device):
            return cuda_memory.DeviceInfo("Orin", (8, 7), 7 * 1024**3, "12.6", "12.6")

    monkeypatch.setattr(cuda_memory, "device_count_or_reason", lambda: (1, None))
    monkeypatch.setattr(cuda_memory, "get_driver", Driver)
    report = check("orin-nano-jp6", "cuda")
    assert report.missing == []
    assert item(report, "CUDA device").value == "Orin, compute 8.7, 7.0 GiB, CUDA runtime 12.6, driver 12.6"


def test_a_hung_driver_is_not_asked_again_in_process(monkeypatch):
    def must_not_run():
        raise AssertionError("CUDA was queried after nvidia-smi timed out")

    monkeypatch.setattr("edgedl.runtimes.cuda.memory.device_count_or_reason", must_not_run)

    def runner(argv, timeout):
        return CommandResult(TIMEOUT_STATUS, "", "nvidia-smi timed out after 5 s") if argv[0] == "nvidia-smi" else None

    report = run_checks("cuda", root("x86-desktop"), runner=runner, python=ISOLATED_VENV)
    assert report.missing == ["cuda"] and "does not answer" in report.capabilities["cuda"].detail
    assert item(report, "CUDA device").status == "warn"


# ---- whole reports on each generation ------------------------------------------------------------------------------

def test_orin_nano_report():
    report = check("orin-nano-jp6", "tensorrt,camera,csi,nvdec")
    assert report.jetson is not None and [s.title for s in report.sections][:2] == ["System", "Jetson"]
    caps = report.capabilities
    assert caps["jetson"].available and caps["camera"].available and caps["csi"].available and caps["nvdec"].available
    assert report.missing == ["tensorrt"] and "link-tensorrt.sh" in caps["tensorrt"].fix
    assert item(report, "/dev/video0").value.endswith("csi://0")
    assert item(report, "Release").value == "L4T 36.3.0, JetPack 6.0"


def test_agx_orin_report_names_each_fix():
    report = check("agx-orin-jp6")
    assert item(report, "Power mode").fix == "sudo nvpmodel -m 0"
    assert item(report, "rtspsrc").fix == "sudo apt-get install gstreamer1.0-plugins-good"
    assert item(report, "import tensorrt").fix == "sudo apt-get install python3-libnvinfer"
    assert item(report, "GPU").value == "Orin (nvgpu), 540.4.0, [N/A]"
    assert item(report, "Memory").status == "ok"                       # 64 GB: no swap is fine
    assert not report.capabilities["camera"].available


def test_jetpack4_and_jetpack5_releases_are_flagged():
    nano = check("nano-jp4")
    assert item(nano, "Release").status == "fail" and "JetPack 4.6.1" in item(nano, "Release").value
    xavier = check("xavier-nx-jp5", "tensorrt")
    assert "Dockerfile.jp5" in item(xavier, "Release").fix
    assert "Dockerfile.jp5" in xavier.capabilities["tensorrt"].fix
    assert item(xavier, "/dev/video0").value == "HD Pro Webcam C920 → /dev/video0"
    assert not any(i.label == "/dev/video1" for s in xavier.sections for i in s.items)     # UVC metadata node


def test_x86_desktop_report():
    report = check("x86-desktop")
    assert report.jetson is None and "Jetson" not in [s.title for s in report.sections]
    assert item(report, "GPU").value == "NVIDIA GeForce RTX 3060, 550.54.14, 12288 MiB"
    assert not report.capabilities["nvdec"].available and not report.capabilities["jetson"].available
    assert not any(i.label.startswith("nv") for s in report.sections for i in s.items)     # nv* elements: Jetson only


def test_low_memory_jetson_without_swap_gets_the_swap_commands(tmp_path):
    tree = shutil.copytree(root("nano-jp4"), tmp_path / "root")
    meminfo = tree / "proc/meminfo"
    meminfo.write_text(meminfo.read_text().replace("SwapTotal:       2029840", "SwapTotal:             0"))
    report = run_checks(None, tree, runner=recorded(FIXTURES / "nano-jp4"), python=ISOLATED_VENV)
    assert item(report, "Memory").status == "warn" and "mkswap" in item(report, "Memory").fix


def test_gstreamer_fix_depends_on_where_a_system_opencv_is(monkeypatch):
    monkeypatch.setattr(checks_media, "dist_version", lambda *names: ("opencv-python-headless", "4.10.0.84"))
    orin = detect_jetson(root("orin-nano-jp6"), recorded(FIXTURES / "orin-nano-jp6"))
    sees = PythonEnv("3.10", "/opt/edgedl/venv/bin/python", "/opt/edgedl/venv", True, True, True)
    fix = checks_media._gstreamer_fix(Context(root("orin-nano-jp6"), recorded(FIXTURES / "orin-nano-jp6"), sees, orin))
    assert fix.startswith("pip uninstall -y opencv-python-headless")
    fix = checks_media._gstreamer_fix(Context(root("orin-nano-jp6"), recorded(FIXTURES / "orin-nano-jp6"), ISOLATED_VENV,
                                              orin))
    assert fix.startswith("/usr/bin/python3.10 -m venv --system-site-packages /opt/edgedl/venv")
    agx = detect_jetson(root("agx-orin-jp6"), recorded(FIXTURES / "agx-orin-jp6"))
    fix = checks_media._gstreamer_fix(Context(root("agx-orin-jp6"), recorded(FIXTURES / "agx-orin-jp6"), sees, agx))
    assert fix.startswith("sudo apt-get install python3-opencv && pip uninstall -y opencv-python-headless")


# ---- --require, rendering, JSON ------------------------------------------------------------------------------------

def test_require_parsing_and_bad_names():
    assert parse_require("tensorrt, GStreamer,tensorrt") == ["tensorrt", "gstreamer"]
    assert parse_require(["cuda", "camera,csi"]) == ["cuda", "camera", "csi"]
    assert parse_require(None) == []
    with pytest.raises(UsageError) as caught:
        parse_require("tensorrt,gpus")
    message = str(caught.value)
    assert "\n" not in message and "gpus" in message and "tensorrt, cuda" in message and caught.value.exit_code == 2


def test_missing_requirement_becomes_a_one_line_exit_9_error():
    report = check("agx-orin-jp6", "tensorrt,camera,jetson")
    assert report.missing == ["tensorrt", "camera"] and not report.ok
    error = missing_error(report)
    assert isinstance(error, MissingDependencyError) and error.exit_code == 9
    assert "\n" not in str(error) and "python3-libnvinfer" in str(error) and "camera" in str(error)
    assert missing_error(check("agx-orin-jp6", "jetson,nvdec")) is None


def test_render_and_json():
    report = check("orin-nano-jp6", "tensorrt,csi")
    text = render(report)
    assert "Jetson\n" in text and "fix: /usr/bin/python3.10 -m venv --system-site-packages" in text
    assert "required tensorrt: MISSING" in text and "required csi: present" in text
    data = json.loads(json.dumps(to_json(report)))
    assert data["missing"] == ["tensorrt"] and data["jetson"]["l4t"] == "36.3.0" and data["jetson"]["jetpack"] == "6.0"
    assert data["jetson"]["power_mode"] == {"id": 0, "name": "15W"}
    assert {s["title"] for s in data["sections"]} >= {"System", "Jetson", "TensorRT", "Cameras"}
    assert all(p["fix"] for p in data["problems"])


# ---- this machine, for real ----------------------------------------------------------------------------------------

def test_doctor_on_this_machine_is_fast_and_complete():
    start = time.perf_counter()
    report = run_checks()
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"doctor took {elapsed:.1f} s"
    assert set(report.capabilities) == {"tensorrt", "cuda", "onnxruntime-gpu", "openvino", "gstreamer", "nvdec",
                                        "camera", "csi", "jetson"}
    assert item(report, "ONNX Runtime").status == "ok" and "CPUExecutionProvider" in item(report, "ONNX Runtime").value
    assert render(report)


def test_importing_the_doctor_loads_no_heavy_module(tmp_path):
    code = ("import sys, edgedl.device.doctor; "
            "print([m for m in ('cv2', 'onnxruntime', 'tensorrt', 'torch', 'openvino', 'cuda') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
