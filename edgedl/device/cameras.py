"""Cameras this machine exposes: V4L2 nodes (``/dev/video*``) and, on a Jetson, CSI sensors.

A Jetson CSI sensor appears as a V4L2 node named ``vi-output, imx219 9-0010``; it is read through
Argus (``csi://N``, GStreamer's ``nvarguscamerasrc sensor-id=N``), where N counts CSI sensors in
node order. A USB (UVC) camera exposes a second node for metadata (``index`` 1), which is not a camera.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgedl.device.probe import read_text

CSI_PREFIX = "vi-output"


@dataclass(frozen=True)
class Camera:
    """A camera: its device node, the driver's name for it, ``csi`` or ``v4l2``, and the URI edgedl opens it by."""

    device: str
    name: str
    kind: str
    uri: str


def _number(path: Path) -> int:
    digits = re.sub(r"\D", "", path.name)
    return int(digits) if digits else -1


def find_cameras(root: Path) -> list[Camera]:
    """Capture devices in ``/dev/video*`` order; metadata-only nodes are left out."""
    cameras: list[Camera] = []
    csi_count = 0
    for node in sorted((root / "dev").glob("video[0-9]*"), key=_number):
        sysfs = f"/sys/class/video4linux/{node.name}"
        if (read_text(root, f"{sysfs}/index") or "0").strip() not in ("", "0"):
            continue
        name = (read_text(root, f"{sysfs}/name") or "").strip() or "unknown"
        device = f"/dev/{node.name}"
        if name.startswith(CSI_PREFIX):
            cameras.append(Camera(device, name, "csi", f"csi://{csi_count}"))
            csi_count += 1
        else:
            cameras.append(Camera(device, name, "v4l2", device))
    return cameras
