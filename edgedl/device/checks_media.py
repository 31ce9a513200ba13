"""Doctor checks for getting frames in: OpenCV's video backends, GStreamer's elements, and cameras."""

from __future__ import annotations

import os

from edgedl.device.cameras import find_cameras
from edgedl.device.python_env import OPENCV_WHEELS, dist_version, module_origin, system_module_dirs, usable_system_dir
from edgedl.device.report import Context, Section
from edgedl.opencv_build import video_backends

GST_INSPECT = ("gst-inspect-1.0",)
#: GStreamer elements edgedl's sources use: element → (what for, apt package, status when a Jetson lacks it).
#: The nv* elements exist only on Jetsons; elsewhere a missing element is only worth a note.
ELEMENTS = {
    "nvarguscamerasrc": ("CSI cameras (Argus)", "nvidia-l4t-gstreamer", "fail"),
    "nvv4l2decoder": ("hardware H.264/H.265 decoding", "nvidia-l4t-gstreamer", "fail"),
    "nvvidconv": ("hardware scaling and colour conversion", "nvidia-l4t-gstreamer", "warn"),
    "rtspsrc": ("RTSP cameras", "gstreamer1.0-plugins-good", "warn"),
    "h264parse": ("H.264 streams and files", "gstreamer1.0-plugins-bad", "warn"),
    "avdec_h264": ("software H.264 decoding", "gstreamer1.0-libav", "info"),
}


def _gstreamer_fix(ctx: Context) -> str:
    """How to get an OpenCV with GStreamer into this interpreter."""
    python = ctx.python
    usable = usable_system_dir(system_module_dirs(ctx.root, "cv2"), python.version)
    wheel = dist_version(*OPENCV_WHEELS)
    drop = f"pip uninstall -y {wheel[0]}" if wheel else None
    if usable is not None:
        here, system_python = usable
        if python.sees_system_packages and drop:
            return f"{drop} (the pip wheel has no GStreamer and hides the system OpenCV in {here}, which has it)"
        venv = python.prefix if python.system_interpreter and python.in_venv else "VENV"
        return (f"{system_python} -m venv --system-site-packages {venv}, (re)install edgedl there"
                + (f" and {drop}" if drop else "") + f": the system OpenCV in {here} has GStreamer")
    apt = "sudo apt-get install python3-opencv"
    if ctx.jetson is not None:
        return " && ".join(s for s in (apt, drop) if s) + " (JetPack/Ubuntu's OpenCV is built with GStreamer)"
    return (f"pip's OpenCV wheels have no GStreamer: {apt} and use it from a venv made with --system-site-packages"
            + (f", then {drop}" if drop else ""))


def check_opencv(ctx: Context) -> Section:
    """Which cv2 this interpreter imports, its video backends, and GStreamer's elements."""
    section = Section("OpenCV and GStreamer")
    origin = module_origin("cv2")
    if origin is None:
        fix = "sudo apt-get install python3-opencv" if ctx.jetson else "pip install opencv-python-headless"
        section.add("OpenCV", "not installed", "fail", fix)
        ctx.offer("gstreamer", False, "OpenCV is not installed", fix)
    else:
        try:
            import cv2

            version, backends = cv2.__version__, video_backends()
        except Exception as exc:  # a broken install can fail in any way; the report says so rather than dying
            hint = "pip install 'numpy<2'" if "numpy" in str(exc).lower() else f"{ctx.python.executable} -c 'import cv2'"
            section.add("OpenCV", f"{origin} does not import ({exc})", "fail", hint)
            ctx.offer("gstreamer", False, f"cv2 does not import: {exc}", hint)
        else:
            listed = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in backends.items())
            gstreamer = backends.get("GStreamer", False)
            fix = None if gstreamer else _gstreamer_fix(ctx)
            section.add("OpenCV", f"{version} from {origin}: {listed}",
                        "ok" if gstreamer else "warn" if ctx.jetson else "info", fix)
            ctx.offer("gstreamer", gstreamer, f"OpenCV {version}, GStreamer {'yes' if gstreamer else 'no'}", fix)
    _check_elements(ctx, section)
    return section


def _check_elements(ctx: Context, section: Section) -> None:
    jetson = ctx.jetson is not None
    result = ctx.runner(GST_INSPECT, 10.0)
    if result is None or not result.ok:
        why = "gst-inspect-1.0 not found" if result is None else f"gst-inspect-1.0 failed: {result.stderr.strip()[:200]}"
        section.add("GStreamer", why, "warn" if jetson else "info",
                    "sudo apt-get install gstreamer1.0-tools" if result is None else None)
        ctx.offer("nvdec", False, why, "sudo apt-get install gstreamer1.0-tools nvidia-l4t-gstreamer")
        return
    # "plugin:  element: description", one line per element.
    found = {parts[1].strip() for parts in (line.split(":", 2) for line in result.stdout.splitlines()) if len(parts) == 3}
    present = [name for name in ELEMENTS if name in found]
    section.add("GStreamer", f"{len(found)} elements; edgedl's: {', '.join(present) or 'none'}")
    for name, (purpose, package, on_jetson) in ELEMENTS.items():
        if name in found or (name.startswith("nv") and not jetson):
            continue
        section.add(name, f"missing: no {purpose}", on_jetson if jetson else "info", f"sudo apt-get install {package}")
    ctx.offer("nvdec", "nvv4l2decoder" in found, "nvv4l2decoder " + ("found" if "nvv4l2decoder" in found else "missing"),
              "sudo apt-get install nvidia-l4t-gstreamer (Jetson only)")


def check_cameras(ctx: Context) -> Section:
    """Cameras in /dev/video*, with the URI edgedl opens each by, and what stops them opening."""
    section = Section("Cameras")
    cameras = find_cameras(ctx.root)
    for camera in cameras:
        usable = os.access(ctx.root / camera.device.lstrip("/"), os.R_OK | os.W_OK)
        section.add(camera.device, f"{camera.name} → {camera.uri}" + ("" if usable else " (no permission)"),
                    "ok" if usable else "warn", None if usable else "sudo usermod -aG video $USER, then log in again")
    if not cameras:
        fix = ("connect a camera; a CSI sensor also needs its device-tree overlay: sudo /opt/nvidia/jetson-io/jetson-io.py, "
               "then reboot" if ctx.jetson else "connect a USB camera (ls /dev/video* lists them)")
        section.add("Cameras", "none found in /dev/video*", "info", fix)
    csi = [c for c in cameras if c.kind == "csi"]
    if csi and not (ctx.root / "tmp/argus_socket").exists():
        section.add("Argus", "no /tmp/argus_socket: CSI cameras will not open", "warn",
                    "sudo systemctl restart nvargus-daemon (in a container: docker run -v /tmp/argus_socket:/tmp/argus_socket …)")
    ctx.offer("camera", bool(cameras), ", ".join(c.uri for c in cameras) or "none found", "connect a camera")
    ctx.offer("csi", bool(csi), ", ".join(c.uri for c in csi) or "no CSI sensor found",
              "connect a CSI camera and enable it with sudo /opt/nvidia/jetson-io/jetson-io.py (Jetson only)")
    return section
