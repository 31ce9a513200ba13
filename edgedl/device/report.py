"""What ``edgedl doctor`` finds: sections of labelled lines, each problem with the command that fixes it,
and the capabilities (``tensorrt``, ``gstreamer``…) that ``--require`` asks for."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgedl.device.jetson import JetsonInfo
from edgedl.device.probe import Runner
from edgedl.device.python_env import PythonEnv

#: What each capability means, in the order reports list them.
CAPABILITIES = {
    "tensorrt": "TensorRT's Python bindings import in this interpreter",
    "cuda": "a CUDA device is usable through cuda-python or pycuda",
    "onnxruntime-gpu": "ONNX Runtime has its CUDA or TensorRT provider",
    "openvino": "OpenVINO can run models here (x86 CPUs)",
    "gstreamer": "OpenCV was built with GStreamer (CSI cameras, hardware decoding)",
    "nvdec": "GStreamer has NVIDIA's hardware video decoder (nvv4l2decoder)",
    "camera": "a camera is connected",
    "csi": "a CSI camera is connected (Jetson)",
    "jetson": "this is an NVIDIA Jetson",
}
#: Line statuses, mildest first: ``warn`` and ``fail`` lines are problems and carry a fix.
STATUSES = ("ok", "info", "warn", "fail")


@dataclass
class Item:
    """One line of the report: a label, what was found, and for a problem the command that fixes it."""

    label: str
    value: str
    status: str = "ok"
    fix: str | None = None


@dataclass
class Section:
    """A titled group of lines."""

    title: str
    items: list[Item] = field(default_factory=list)

    def add(self, label: str, value: str, status: str = "ok", fix: str | None = None) -> Item:
        item = Item(label, value, status, fix)
        self.items.append(item)
        return item


@dataclass(frozen=True)
class Capability:
    """Whether a capability is here, what decided it, and how to get it when it is not."""

    available: bool
    detail: str
    fix: str | None = None


@dataclass
class DoctorReport:
    """Everything ``run_checks`` found."""

    sections: list[Section]
    capabilities: dict[str, Capability]
    required: list[str]
    jetson: JetsonInfo | None = None

    @property
    def missing(self) -> list[str]:
        """The required capabilities that are not available."""
        return [name for name in self.required if not self.capabilities[name].available]

    @property
    def problems(self) -> list[Item]:
        """Every ``warn`` and ``fail`` line, worst first."""
        items = [item for section in self.sections for item in section.items if item.status in ("warn", "fail")]
        return sorted(items, key=lambda item: -STATUSES.index(item.status))

    @property
    def ok(self) -> bool:
        return not self.missing


@dataclass
class Context:
    """What every check reads (the machine, the interpreter, the Jetson if any) and the capabilities they record."""

    root: Path
    runner: Runner
    python: PythonEnv
    jetson: JetsonInfo | None
    capabilities: dict[str, Capability] = field(default_factory=dict)

    def offer(self, name: str, available: bool, detail: str, fix: str | None = None) -> None:
        """Record a capability; ``fix`` is kept only when it is missing."""
        self.capabilities[name] = Capability(available, detail, None if available else fix)
