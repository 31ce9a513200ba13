"""Is this a Jetson, and which: module, L4T and JetPack release, power mode and clocks, JetPack's libraries.

Read from the files the kernel and JetPack leave (``/proc/device-tree/model`` and ``compatible``,
``/etc/nv_tegra_release``, ``/etc/nvpmodel.conf``, sysfs clocks) and two quick commands
(``nvpmodel -q``, ``dpkg-query``), under a ``root`` so tests and containers can point it anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edgedl.device.l4t import L4TRelease, parse_core_package, parse_nv_tegra_release
from edgedl.device.packages import first_version, installed_packages, upstream
from edgedl.device.power import PowerMode, PowerModes, clocks_state, query_mode, read_modes
from edgedl.device.probe import Runner, device_tree_strings, read_text, run_command

#: SoC → Jetson family.
FAMILIES = {"tegra210": "Nano / TX1", "tegra186": "TX2", "tegra194": "Xavier", "tegra234": "Orin", "tegra264": "Thor"}
#: Module part numbers (the ``nvidia,p3767-0005`` entry of ``compatible``) → module. Third-party
#: carrier boards rename the model string, so the part number is the reliable name.
MODULES = {
    "p3448-0000": "Jetson Nano (developer kit module)", "p3448-0002": "Jetson Nano", "p3448-0003": "Jetson Nano 2GB",
    "p3668-0000": "Jetson Xavier NX (developer kit module)", "p3668-0001": "Jetson Xavier NX",
    "p3668-0003": "Jetson Xavier NX 16GB",
    "p3701-0000": "Jetson AGX Orin 32GB (developer kit module)", "p3701-0004": "Jetson AGX Orin 32GB",
    "p3701-0005": "Jetson AGX Orin 64GB",
    "p3767-0000": "Jetson Orin NX 16GB", "p3767-0001": "Jetson Orin NX 8GB", "p3767-0003": "Jetson Orin Nano 8GB",
    "p3767-0004": "Jetson Orin Nano 4GB", "p3767-0005": "Jetson Orin Nano 8GB (developer kit module)",
}
#: The JetPack packages whose versions a report shows, each as (label, package name prefixes in order of preference).
LIBRARIES = (
    ("JetPack", ("nvidia-jetpack",)),
    ("CUDA", ("cuda-cudart-1", "cuda-runtime-1")),
    ("cuDNN", ("libcudnn9-cuda", "libcudnn8")),
    ("TensorRT", ("tensorrt", "libnvinfer10", "libnvinfer8")),
    ("TensorRT Python", ("python3-libnvinfer",)),
    ("OpenCV", ("nvidia-opencv", "libopencv", "python3-opencv")),
    ("GStreamer plugins", ("nvidia-l4t-gstreamer",)),
)
_PART = re.compile(r"p\d{4}-\d{4}")
_RELEVANT = ("nvidia-l4t-core", *(prefix for _, prefixes in LIBRARIES for prefix in prefixes))


@dataclass(frozen=True)
class JetsonInfo:
    """What a Jetson is and how it is set up."""

    model: str
    module: str
    soc: str | None
    l4t: L4TRelease | None
    power_mode: PowerMode | None
    power_modes: PowerModes
    clocks: str
    packages: dict[str, str] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        """``Orin``, ``Xavier``…, from the SoC."""
        return FAMILIES.get(self.soc or "")

    @property
    def jetpack(self) -> str | None:
        """The JetPack release: the ``nvidia-jetpack`` package's when installed, else the L4T mapping."""
        found = first_version(self.packages, "nvidia-jetpack")
        if found:
            return upstream(found[1])
        return None if self.l4t is None else self.l4t.jetpack

    @property
    def jetpack_major(self) -> int | None:
        return None if self.l4t is None else self.l4t.jetpack_major

    def library(self, label: str) -> str | None:
        """The upstream version of one of :data:`LIBRARIES` (``"TensorRT"`` → ``10.3.0.30``), or None."""
        prefixes = dict(LIBRARIES)[label]
        found = first_version(self.packages, *prefixes)
        return None if found is None else upstream(found[1])


def _module_name(model: str, compatible: list[str]) -> str:
    # "nvidia,p3768-0000+p3767-0005" names the carrier board, then the module; only modules are in MODULES.
    for entry in compatible:
        for part in _PART.findall(entry):
            if part in MODULES:
                return MODULES[part]
    return re.sub(r"\s+Developer Kit.*$", "", model.removeprefix("NVIDIA ").strip()) or "unknown Jetson"


def detect_jetson(root: Path = Path("/"), runner: Runner = run_command) -> JetsonInfo | None:
    """The Jetson at ``root``, or None when it is not one (no L4T release file, no Tegra in the device tree)."""
    compatible = device_tree_strings(root, "/proc/device-tree/compatible")
    release_text = read_text(root, "/etc/nv_tegra_release")
    soc = next((c.split(",", 1)[1] for c in compatible if c.startswith("nvidia,tegra")), None)
    if release_text is None and soc is None:
        return None
    model = " ".join(device_tree_strings(root, "/proc/device-tree/model")) or "unknown Jetson"
    packages = {name: v for name, v in installed_packages(runner).items() if name.startswith(_RELEVANT)}
    l4t = parse_nv_tegra_release(release_text) if release_text else None
    if l4t is None and "nvidia-l4t-core" in packages:
        l4t = parse_core_package(packages["nvidia-l4t-core"])
    return JetsonInfo(model=model, module=_module_name(model, compatible), soc=soc, l4t=l4t,
                      power_mode=query_mode(runner), power_modes=read_modes(root), clocks=clocks_state(root),
                      packages=packages)
