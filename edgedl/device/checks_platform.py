"""Doctor checks for the platform: OS, Python, memory, the Jetson itself, and edgedl's Python dependencies."""

from __future__ import annotations

import platform
import re

from edgedl.about import __version__
from edgedl.device.jetson import JetsonInfo
from edgedl.device.memory import GIB, read_memory
from edgedl.device.probe import read_text
from edgedl.device.python_env import OPENCV_WHEELS, dist_version, module_origin, requirements
from edgedl.device.report import Context, Section

#: Distributions that satisfy a requirement under another name (the module they provide is the same).
ALTERNATIVES = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "opencv-python-headless": OPENCV_WHEELS,
}
#: Extras for working on edgedl itself, not for running it.
DEV_EXTRAS = ("test", "dev", "docs")
#: A Jetson with less RAM than this and no swap can run out of memory building a TensorRT engine.
LOW_MEMORY = 8 * GIB
SWAP_FIX = ("sudo fallocate -l 4G /var/swapfile && sudo chmod 600 /var/swapfile && sudo mkswap /var/swapfile && "
            "sudo swapon /var/swapfile && echo '/var/swapfile none swap sw 0 0' | sudo tee -a /etc/fstab")


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def check_system(ctx: Context) -> Section:
    """OS, Python, edgedl and memory."""
    section = Section("System")
    os_release = read_text(ctx.root, "/etc/os-release") or ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', os_release, re.M)
    section.add("OS", f"{pretty[1] if pretty else platform.system()} "
                      f"({platform.system()} {platform.release()}, {platform.machine()})")
    py = ctx.python
    where = "system interpreter" if not py.in_venv else \
        "venv, sees system packages" if py.system_site else "venv, isolated from system packages"
    section.add("Python", f"{py.version} at {py.executable} ({where})")
    section.add("edgedl", f"{__version__} at {module_origin('edgedl') or '?'}")
    memory = read_memory(ctx.root)
    if memory is None:
        section.add("Memory", "unknown (/proc/meminfo unreadable)", "info")
        return section
    swap = f"swap {_gib(memory.swap_free)} free of {_gib(memory.swap_total)}" if memory.swap_total else "no swap"
    value = f"{_gib(memory.available)} available of {_gib(memory.total)}; {swap}"
    if ctx.jetson is not None and memory.total < LOW_MEMORY and memory.swap_total == 0:
        section.add("Memory", value + ": TensorRT engine builds can run out of memory", "warn", SWAP_FIX)
    else:
        section.add("Memory", value)
    return section


def check_jetson(ctx: Context) -> Section | None:
    """Module, L4T/JetPack, JetPack's libraries, power mode and clocks; None when this is not a Jetson."""
    jetson = ctx.jetson
    ctx.offer("jetson", jetson is not None, jetson.module if jetson else "not a Jetson")
    if jetson is None:
        return None
    section = Section("Jetson")
    section.add("Module", f"{jetson.module} — {jetson.model} ({jetson.soc or 'unknown SoC'}, {jetson.family or '?'})")
    release = f"L4T {jetson.l4t}, JetPack {jetson.jetpack or '?'}" if jetson.l4t else "L4T release unknown"
    if jetson.jetpack_major is not None and jetson.jetpack_major < 5:
        section.add("Release", f"{release}: too old for edgedl (Python 3.6, TensorRT 8.2)", "fail",
                    "edgedl needs JetPack 5 (in its container) or JetPack 6; the original Jetson Nano stops at "
                    "JetPack 4.6, so use ONNX Runtime on the CPU there or move to an Orin module")
    elif jetson.jetpack_major == 5:
        section.add("Release", f"{release}: the system Python is 3.8, so edgedl runs in the JetPack 5 container",
                    "info", "docker build -f jetson/Dockerfile.jp5 -t edgedl:jp5 . (see jetson/README.md)")
    else:
        section.add("Release", release, "ok" if jetson.l4t else "info")
    for label, needed_fix in (("CUDA", "sudo apt-get install nvidia-cuda"), ("cuDNN", None),
                              ("TensorRT", "sudo apt-get install nvidia-tensorrt"), ("OpenCV", None)):
        version = jetson.library(label)
        if version:
            section.add(label, version)
        else:
            section.add(label, "not installed (dpkg)", "warn" if needed_fix else "info", needed_fix)
    _power(section, jetson)
    return section


def _power(section: Section, jetson: JetsonInfo) -> None:
    mode, fastest = jetson.power_mode, jetson.power_modes.fastest()
    if mode is None:
        section.add("Power mode", "unknown (nvpmodel -q gave nothing)", "info", "sudo nvpmodel -q")
    elif fastest is not None and mode.name != fastest.name:
        section.add("Power mode", f"{mode.name} (id {mode.id}); {fastest.name} (id {fastest.id}) is the fastest",
                    "info", f"sudo nvpmodel -m {fastest.id}")
    else:
        section.add("Power mode", f"{mode.name} (id {mode.id})")
    clocks = {"on": "pinned at their maximum (jetson_clocks on): steady latency, more power and heat",
              "off": "scale with load (jetson_clocks off): first frames are slower; for benchmarks pin them",
              "partial": "partly pinned (some CPUs or the GPU held at their maximum)",
              "unknown": "unknown (no cpufreq/devfreq in sysfs)"}[jetson.clocks]
    section.add("Clocks", clocks, "ok" if jetson.clocks == "on" else "info",
                None if jetson.clocks == "on" else "sudo jetson_clocks")


def check_packages(ctx: Context) -> Section:
    """Each of edgedl's declared dependencies with the installed version; a missing core one is a problem."""
    section = Section("Python packages")
    declared = requirements("edgedl")
    if not declared:
        section.add("edgedl", "no installed metadata (running from a source tree?)", "warn", "pip install -e .")
        return section
    extras: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for name, text, extra in declared:
        if extra in DEV_EXTRAS:
            continue
        texts.setdefault(name, text)
        extras.setdefault(name, [])
        if extra:
            extras[name].append(extra)
    for name, used_by in extras.items():
        found = dist_version(*ALTERNATIVES.get(name, (name,)))
        label = name if found is None or found[0] == name else f"{name} (as {found[0]})"
        if found is not None:
            section.add(label, found[1])
        elif used_by:
            section.add(label, f"not installed (only the {', '.join(sorted(set(used_by)))} extra needs it)", "info")
        elif name.startswith("opencv") and module_origin("cv2"):
            section.add(name, f"not installed; cv2 comes from {module_origin('cv2')} (system OpenCV)")
        else:
            section.add(label, "not installed", "fail", f"pip install '{texts[name]}'")
    return section
