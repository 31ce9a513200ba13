"""The machine section of a report: what ran the profile and how it was set up.

A Jetson is described by :mod:`edgedl.device.jetson` (module, L4T/JetPack, nvpmodel mode,
jetson_clocks, JetPack's CUDA and TensorRT); any machine by its CPU (model, cores, frequency
governor, load average) and, where ``nvidia-smi`` answers, its GPUs.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from edgedl.device.probe import Runner, read_text, run_command

#: Python distributions whose versions a report records when installed.
DISTRIBUTIONS = ("numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "cuda-python", "opencv-python-headless")


def cpu_section(root: Path = Path("/")) -> dict[str, Any]:
    """CPU model, logical and physical cores, cpu0's frequency governor, load average."""
    from edgedl.loading.ort_session import physical_cores
    from edgedl.runtimes.cpu_choice import cpu_name

    governor = read_text(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {"model": cpu_name(), "cores_logical": os.cpu_count(), "cores_physical": physical_cores(),
            "governor": governor.strip() if governor else None, "load_average": load}


def jetson_section(root: Path = Path("/"), runner: Runner = run_command) -> dict[str, Any] | None:
    """The Jetson's module, release, power mode, clocks and JetPack libraries; None elsewhere."""
    from edgedl.device.jetson import detect_jetson

    info = detect_jetson(root, runner)
    if info is None:
        return None
    mode = info.power_mode
    return {"module": info.module, "model": info.model, "soc": info.soc, "l4t": None if info.l4t is None else str(info.l4t),
            "jetpack": info.jetpack, "power_mode": None if mode is None else {"id": mode.id, "name": mode.name},
            "clocks": info.clocks, "tensorrt": info.library("TensorRT"), "cuda": info.library("CUDA")}


def describe_machine(root: Path = Path("/"), runner: Runner = run_command) -> dict[str, Any]:
    """The whole machine section."""
    from edgedl.profiling.nvidia_smi import gpu_info

    jetson = jetson_section(root, runner)
    return {"hostname": platform.node(), "os": platform.platform(), "arch": platform.machine(), "cpu": cpu_section(root),
            "jetson": jetson, "gpus": [] if jetson is not None else gpu_info(runner)}


def software_versions() -> dict[str, str]:
    """edgedl, Python and the installed runtimes (read from package metadata, so nothing heavy is imported)."""
    from edgedl.about import __version__

    versions = {"edgedl": __version__, "python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
