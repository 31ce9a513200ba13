"""Doctor checks for the inference runtimes: ONNX Runtime, OpenVINO, the GPU and CUDA bindings, TensorRT."""

from __future__ import annotations

from pathlib import Path

from edgedl.device.jetson import JetsonInfo
from edgedl.device.probe import TIMEOUT_STATUS, CommandResult
from edgedl.device.python_env import PythonEnv, dist_version, module_origin, system_module_dirs, usable_system_dir
from edgedl.device.report import Context, Section
from edgedl.errors import EdgeDLError
from edgedl.runtimes.select import INSTALL

NVIDIA_SMI = ("nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
#: Run in a child of this interpreter: a broken TensorRT install can crash the process that imports it.
TENSORRT_IMPORT = "import sys, tensorrt; sys.stdout.write(tensorrt.__version__)"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_runtimes(ctx: Context) -> Section:
    """ONNX Runtime (version, execution providers) and OpenVINO."""
    section = Section("Runtimes")
    providers: list[str] = []
    try:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
        section.add("ONNX Runtime", f"{onnxruntime.__version__}: {', '.join(providers)}")
    except Exception as exc:  # a broken install can fail in any way; the report says so rather than dying
        section.add("ONNX Runtime", f"does not import ({exc})", "fail", INSTALL["onnxruntime"])
    gpu = [p for p in providers if p in GPU_PROVIDERS]
    ctx.offer("onnxruntime-gpu", bool(gpu), ", ".join(gpu) or "CPU providers only", INSTALL["onnxruntime-gpu"])

    from edgedl.runtimes.openvino import backend as openvino

    reason = openvino.probe()
    found = dist_version("openvino")
    if reason is None:
        section.add("OpenVINO", found[1] if found else "installed")
    else:
        section.add("OpenVINO", f"{found[1] + ' installed, but ' if found else ''}not usable: {reason}", "info")
    ctx.offer("openvino", reason is None, reason or (found[1] if found else "installed"), INSTALL["openvino"])
    return section


def _nvidia_smi(ctx: Context, section: Section) -> CommandResult | None:
    smi = ctx.runner(NVIDIA_SMI, 5.0)
    if smi is None:
        section.add("nvidia-smi", "not found", "info")
    elif not smi.ok:
        section.add("nvidia-smi", f"failed: {_last_line(smi.stderr or smi.stdout)}", "info" if ctx.jetson else "warn",
                    None if ctx.jetson else "check the NVIDIA driver is loaded: lsmod | grep nvidia; sudo dmesg | grep -i nvrm")
    else:
        for line in smi.stdout.strip().splitlines():
            section.add("GPU", line.strip())
    return smi


def _cuda_fix(ctx: Context, has_bindings: bool, reason: str) -> str:
    """The command that makes a CUDA device usable, given why it is not."""
    from edgedl.runtimes.cuda.memory import INSTALL_HINT

    jetpack_cuda = ctx.jetson.library("CUDA") if ctx.jetson else None
    # cuda-python's major version must not be newer than the CUDA the driver supports (JetPack's).
    major = int(jetpack_cuda.split(".")[0]) if jetpack_cuda else None
    pin = f"pip install 'cuda-python>={major},<{major + 1}'" if major else None
    if not has_bindings:
        return pin or INSTALL_HINT
    if pin and "insufficient" in reason.lower():
        return f"{pin} (the bindings' CUDA is newer than JetPack's CUDA {jetpack_cuda})"
    if ctx.jetson is not None:
        return "add yourself to the video group for the GPU nodes: sudo usermod -aG video $USER, then log in again"
    return "check the driver with nvidia-smi; install the cuda-python major version your driver supports"


def check_gpu(ctx: Context) -> Section:
    """nvidia-smi's view of the GPUs, and whether the CUDA Python bindings can use one."""
    from edgedl.runtimes.cuda.memory import device_count_or_reason, get_driver

    section = Section("GPU and CUDA")
    smi = _nvidia_smi(ctx, section)
    bindings = [f"{name} {version}" for name, version in filter(None, (dist_version("cuda-python"),
                                                                         dist_version("pycuda")))]
    section.add("CUDA bindings", ", ".join(bindings) or "none installed", "ok" if bindings else "info")
    if smi is not None and smi.returncode == TIMEOUT_STATUS:
        # The same driver would be asked in-process next, with no timeout to save us.
        section.add("CUDA device", "not checked: the NVIDIA driver does not answer", "warn",
                    "sudo dmesg | grep -i -e nvrm -e xid (a reboot usually clears a hung GPU)")
        ctx.offer("cuda", False, "the NVIDIA driver does not answer (nvidia-smi timed out)")
        return section
    count, reason = device_count_or_reason()
    if count:
        try:
            info = get_driver().device_info(0)
        except EdgeDLError as exc:
            section.add("CUDA device", f"{count} found, but it cannot be queried: {exc.problem}", "warn", exc.fix)
            ctx.offer("cuda", False, exc.problem, exc.fix)
            return section
        detail = f"{info.name}, compute {info.compute_capability[0]}.{info.compute_capability[1]}, " \
                 f"{info.total_memory / 1024**3:.1f} GiB, CUDA runtime {info.cuda_runtime}, driver {info.cuda_driver}"
        section.add("CUDA device", detail + (f" ({count} devices)" if count > 1 else ""))
        ctx.offer("cuda", True, detail)
        return section
    reason = reason or "no CUDA device"
    fix = _cuda_fix(ctx, bool(bindings), reason)
    has_gpu = ctx.jetson is not None or (smi is not None and smi.ok)
    section.add("CUDA device", reason, "warn" if has_gpu else "info", fix)
    ctx.offer("cuda", False, reason, fix)
    return section


def tensorrt_advice(python: PythonEnv, bindings: dict[str, Path], jetson: JetsonInfo | None) -> tuple[str, str, str]:
    """(status, what is wrong, the fix) when ``import tensorrt`` cannot find the module.

    ``bindings`` maps Python versions to the dist-packages folders holding TensorRT's apt-installed
    bindings (see ``system_module_dirs``). The usual Jetson failure is a venv made without
    ``--system-site-packages``, which hides them.
    """
    usable = usable_system_dir(bindings, python.version)
    here, system_python = usable if usable else (None, "")
    if here is not None and python.system_interpreter and python.in_venv and not python.system_site:
        return ("fail", f"the bindings are in {here}, which this venv does not see",
                f"{system_python} -m venv --system-site-packages {python.prefix} (rewrites pyvenv.cfg, keeps "
                f"installed packages), or link them in: jetson/link-tensorrt.sh {python.prefix}")
    if here is not None:
        return ("fail", f"the bindings are in {here}, which this interpreter ({python.executable}) does not search",
                f"use {system_python}, or a venv made from it: {system_python} -m venv --system-site-packages VENV")
    if bindings:
        versions = " and ".join(sorted(bindings))
        fix = ("run edgedl in the JetPack 5 container: docker build -f jetson/Dockerfile.jp5 -t edgedl:jp5 ."
               if jetson is not None and jetson.jetpack_major == 5 else f"use Python {versions}, which they were built for")
        return "fail", f"the bindings are built for Python {versions}; this is Python {python.version}", fix
    if jetson is not None:
        packages = "python3-libnvinfer" if jetson.library("TensorRT") else "nvidia-tensorrt python3-libnvinfer"
        return "fail", "JetPack's TensorRT Python bindings are not installed", f"sudo apt-get install {packages}"
    return "info", "not installed (TensorRT needs an NVIDIA GPU)", INSTALL["tensorrt"]


def _import_fix(error: str, python: PythonEnv) -> str:
    if "static TLS" in error:
        # aarch64: libgomp loaded late cannot get static TLS; preloading it is the usual workaround.
        return "export LD_PRELOAD=/usr/lib/aarch64-linux-gnu/libgomp.so.1, or import tensorrt before cv2"
    if "numpy" in error.lower():
        return "pip install 'numpy<2' (JetPack's TensorRT and OpenCV bindings are built against NumPy 1.x)"
    if "libcudart" in error or "libcublas" in error:
        return "sudo apt-get install nvidia-cuda (JetPack's CUDA libraries are missing)"
    if "libnvinfer" in error or "shared object" in error:
        return "sudo apt-get install --reinstall python3-libnvinfer (a TensorRT library is missing)"
    return f"{python.executable} -c 'import tensorrt' shows the whole error"


def check_tensorrt(ctx: Context) -> Section:
    """TensorRT's version and whether ``import tensorrt`` works in this interpreter; the fix when it does not."""
    section = Section("TensorRT")
    system = ctx.jetson.library("TensorRT") if ctx.jetson else None
    wheel = dist_version("tensorrt", "tensorrt-cu12", "tensorrt-cu11")
    if system or wheel:
        section.add("Installed", f"{system} (JetPack)" if system else f"{wheel[1]} ({wheel[0]} wheel)")
    origin = module_origin("tensorrt")
    if origin is None:
        status, problem, fix = tensorrt_advice(ctx.python, system_module_dirs(ctx.root, "tensorrt"), ctx.jetson)
        section.add("import tensorrt", problem, status, fix)
        ctx.offer("tensorrt", False, problem, fix)
        return section
    result = ctx.runner((ctx.python.executable, "-c", TENSORRT_IMPORT), 30.0)
    if result is not None and result.ok:
        section.add("import tensorrt", f"works: {result.stdout.strip()} from {origin}")
        ctx.offer("tensorrt", True, result.stdout.strip())
        return section
    if result is None or result.returncode == TIMEOUT_STATUS:
        error = "did not finish in 30 s" if result else "this interpreter could not be run"
    else:
        error = _last_line(result.stderr)
    fix = _import_fix(error, ctx.python)
    section.add("import tensorrt", f"fails: {error}", "fail", fix)
    ctx.offer("tensorrt", False, error, fix)
    return section
