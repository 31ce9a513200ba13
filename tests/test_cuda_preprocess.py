"""GPU preprocessing: the kernel, its launch arguments, and GpuPreprocessor against the CPU path.

Without a GPU: NVRTC compiles the kernel for several architectures (NVRTC needs no GPU); the launch
taps are checked against PreprocessSpec.geometry and against where cv2.resize samples; and the
kernel's own source, built for the CPU with a C++ compiler, runs the whole GpuPreprocessor flow over
the fake CUDA driver (host memory) and must equal edgedl.preprocess.preprocess bit for bit.
With a GPU (``gpu`` marker): the same comparisons on the device, to a stated tolerance, plus memory.
"""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess
import threading

import cv2
import numpy as np
import pytest
from fake_tensorrt import FakeCudaDriver, FakeGpu

from edgedl.errors import DeviceError, MissingDependencyError, UsageError
from edgedl.preprocess import COLOR_ORDERS, LAYOUTS, OUTPUT_DTYPES, PRESETS, RESIZE_MODES, PreprocessSpec, preprocess
from edgedl.runtimes.cuda import preprocess as cuda_preprocess
from edgedl.runtimes.cuda.kernel import (
    BLOCK,
    KERNEL_BODY,
    KERNEL_NAMES,
    WEIGHT_ONE,
    LaunchPlan,
    layout_asserts,
    nvrtc_target,
    plan_launch,
)
from edgedl.runtimes.cuda.preprocess import GpuPreprocessor, compile_kernels

IMAGENET = {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Noise: every neighbouring pixel differs, so any wrong tap or weight shows."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def every_output(width: int, height: int, resize: str, interpolation: str = "linear") -> list[PreprocessSpec]:
    """The spec in every colour order, layout and dtype, with per-channel mean and std."""
    return [PreprocessSpec(width, height, resize=resize, color=color, layout=layout, dtype=dtype,
                           interpolation=interpolation, pad_value=114, **IMAGENET)
            for color in COLOR_ORDERS for layout in LAYOUTS for dtype in OUTPUT_DTYPES]


# --------------------------------------------------------------------------------------------- NVRTC (no GPU needed)


def nvrtc_or_skip() -> object:
    try:
        return cuda_preprocess._nvrtc()
    except MissingDependencyError as exc:
        pytest.skip(f"NVRTC is not importable here: {exc}")


@pytest.mark.parametrize("capability", [(7, 2), (8, 7), (9, 0), (99, 0)],
                         ids=["xavier-sm72", "orin-sm87", "hopper-sm90", "newer-than-nvrtc"])
def test_every_kernel_compiles_with_nvrtc(capability: tuple[int, int]) -> None:
    nvrtc = nvrtc_or_skip()
    supported = list(nvrtc.nvrtcGetSupportedArchs()[1])
    cc = capability[0] * 10 + capability[1]
    if min(supported) > cc:  # CUDA 13's NVRTC dropped Volta/Xavier (sm_72): a clear error, not a crash
        with pytest.raises(DeviceError, match=f"cannot compile for sm_{cc}.*fix: install the NVRTC of the device's CUDA"):
            compile_kernels(capability)
        return
    compiled = compile_kernels(capability)
    for name in KERNEL_NAMES:
        assert f".entry {name}(" in compiled.ptx
    if cc in supported:
        assert compiled.architecture == f"sm_{cc}" and compiled.image[:4] == b"\x7fELF"  # a cubin for the device itself
    else:
        assert compiled.architecture == f"compute_{max(supported)}"
        assert compiled.image.startswith(b"//") and compiled.image.endswith(b"\0")  # PTX, NUL-terminated for the driver
    assert "fma.rn.f32" not in compiled.ptx  # --fmad=false: x * a + b rounds like numpy's separate multiply and add
    assert ".local" not in compiled.ptx  # the per-pixel values stay in registers
    assert compile_kernels(capability) is compiled  # compiled once per process


def test_nvrtc_target_picks_a_cubin_ptx_or_a_clear_error() -> None:
    supported = [75, 80, 86, 87, 89, 90]
    assert nvrtc_target((8, 7), supported, "12.6") == ("sm_87", True)
    assert nvrtc_target((8, 8), supported, "12.6") == ("compute_87", False)
    with pytest.raises(DeviceError) as info:
        nvrtc_target((7, 2), supported, "13.0")
    assert str(info.value) == ("NVRTC 13.0 cannot compile for sm_72 (it supports sm_75 and newer) — fix: install the NVRTC "
                               "of the device's CUDA (JetPack ships it), or preprocess on the CPU")


def test_a_compile_error_is_a_one_line_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    nvrtc_or_skip()
    monkeypatch.setattr(cuda_preprocess, "KERNEL_SOURCE", "extern \"C\" __global__ void k() { undeclared(); }")
    monkeypatch.setattr(cuda_preprocess, "_compiled", {})
    with pytest.raises(DeviceError, match="NVRTC compilation failed .*NVRTC_ERROR_COMPILATION: .*undeclared") as info:
        compile_kernels((8, 7))
    assert "\n" not in str(info.value)


def test_missing_nvrtc_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    nvrtc = nvrtc_or_skip()
    from cuda import bindings

    def not_found() -> None:
        raise RuntimeError('"nvrtc" could not be found')  # what cuda.pathfinder's DynamicLibNotFoundError derives from

    monkeypatch.setattr(nvrtc, "nvrtcVersion", not_found)
    monkeypatch.setattr(cuda_preprocess, "_compiled", {})
    major = bindings.__version__.split(".")[0]
    with pytest.raises(MissingDependencyError, match=f"libnvrtc.*not found.*nvidia-cuda-nvrtc.*=={major}") as info:
        compile_kernels((8, 7))
    assert "\n" not in str(info.value)


def test_missing_cuda_python_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_preprocess, "_importable", lambda module: module == "pycuda")
    spec = PreprocessSpec(64, 64)
    with pytest.raises(MissingDependencyError, match="needs cuda-python \\(pycuda is installed.*edgedl\\[tensorrt\\]"):
        GpuPreprocessor(spec)
    monkeypatch.setattr(cuda_preprocess, "_compiled", {})
    with pytest.raises(MissingDependencyError, match="NVRTC, which needs cuda-python.*device_preprocess='cpu'"):
        compile_kernels((8, 7))


def test_no_gpu_is_a_one_line_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cuda.bindings")
    from conftest import cuda_available

    if cuda_available():
        pytest.skip("a GPU is present")
    monkeypatch.delenv("EDGEDL_CUDA_DRIVER", raising=False)
    with pytest.raises(DeviceError, match="GPU preprocessing needs a usable CUDA device: CUDA cudaGetDeviceCount") as info:
        GpuPreprocessor(PreprocessSpec(64, 64))
    assert "\n" not in str(info.value) and "device_preprocess='cpu'" in str(info.value)

    class NoDevice(FakeCudaDriver):
        def device_count(self) -> int:
            return 0

    with pytest.raises(DeviceError, match="needs a CUDA device and none was found"):
        GpuPreprocessor(PreprocessSpec(64, 64), driver=NoDevice(FakeGpu()))


# --------------------------------------------------------------------------------------------- launch plan (pure Python)


@pytest.mark.parametrize("resize", RESIZE_MODES)
def test_plan_follows_the_cpu_geometry_for_many_sizes(resize: str) -> None:
    rng = np.random.default_rng(1)
    for width, height in [(640, 640), (320, 192), (224, 224), (7, 5)]:
        spec = PreprocessSpec(width, height, resize=resize)
        for w, h in [(int(a), int(b)) for a, b in rng.integers(1, 4000, (60, 2))] + [(1920, 1080), (641, 479), (1, 1)]:
            geometry = spec.geometry(w, h)
            if min(spec.resized_size(geometry)) == 0:  # a sliver letterboxed to nothing: cv2.resize refuses it too
                with pytest.raises(UsageError, match=f"a {w}x{h} frame letterboxed into .* would be .*fix: crop the frame"):
                    plan_launch(spec, w, h)
                continue
            plan = plan_launch(spec, w, h)
            assert plan.geometry == geometry and not plan.cpu_resize and (plan.source_width, plan.source_height) == (w, h)
            cols, rows = plan.columns, plan.rows
            assert cols.shape == (width, 4) and rows.shape == (height, 4) and plan.taps.dtype == np.int32
            for taps, size, source, offset, resized in [
                (cols, width, w, int(geometry.offset_x), spec.resized_size(geometry)[0]),
                (rows, height, h, int(geometry.offset_y), spec.resized_size(geometry)[1]),
            ]:
                position = np.arange(size)
                expected_pad = (position < offset) | (position >= offset + resized) if resize == "letterbox" else \
                    np.zeros(size, bool)
                np.testing.assert_array_equal(taps[:, 0] < 0, expected_pad)
                inside = taps[~expected_pad]
                assert inside[:, :2].min(initial=0) >= 0 and inside[:, :2].max(initial=0) <= source - 1
                assert (inside[:, 1] >= inside[:, 0]).all() and (inside[:, 1] - inside[:, 0] <= 1).all()
                assert inside[:, 2:].min(initial=0) >= 0 and inside[:, 2:].max(initial=0) <= WEIGHT_ONE
            assert plan.block == BLOCK
            assert (plan.grid[0] - 1) * BLOCK[0] < width <= plan.grid[0] * BLOCK[0]
            assert (plan.grid[1] - 1) * BLOCK[1] < height <= plan.grid[1] * BLOCK[1]


def test_area_plans_sample_the_cpu_resized_image_one_to_one() -> None:
    spec = PreprocessSpec(96, 64, resize="letterbox", interpolation="area")
    plan = plan_launch(spec, 1920, 1080)
    assert plan.cpu_resize and (plan.source_width, plan.source_height) == (96, 64)
    assert plan.geometry == spec.geometry(1920, 1080)  # boxes still map back to the original frame
    for taps, size in [(plan.columns, 96), (plan.rows, 64)]:
        np.testing.assert_array_equal(taps[:, 0], np.arange(size))
        assert (taps[:, 2] == WEIGHT_ONE).all() and (taps[:, 3] == 0).all()


@pytest.mark.parametrize("size", [(1920, 1080, 640, 360), (641, 479, 640, 640), (50, 30, 640, 384), (3, 2, 7, 9),
                                  (1280, 720, 1279, 721)])
def test_taps_sample_where_cv2_resize_does(size: tuple[int, int, int, int]) -> None:
    w, h, width, height = size
    plan = plan_launch(PreprocessSpec(width, height, resize="stretch"), w, h)
    # cv2.resize of a coordinate ramp returns, per output pixel, the (fractional) source position it sampled.
    ramp_x = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    ramp_y = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    for ramp, taps, axis in [(ramp_x, plan.columns, 0), (ramp_y, plan.rows, 1)]:
        where = cv2.resize(ramp, (width, height), interpolation=cv2.INTER_LINEAR)
        where = where[0] if axis == 0 else where[:, 0]
        ours = (taps[:, 0] * taps[:, 2] + taps[:, 1] * taps[:, 3]) / WEIGHT_ONE
        np.testing.assert_allclose(ours, where, atol=1 / WEIGHT_ONE)  # 11-bit weights vs OpenCV's float ones
    nearest = plan_launch(PreprocessSpec(width, height, resize="stretch", interpolation="nearest"), w, h)
    for ramp, taps, axis in [(ramp_x, nearest.columns, 0), (ramp_y, nearest.rows, 1)]:
        where = cv2.resize(ramp, (width, height), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(taps[:, 0], where[0] if axis == 0 else where[:, 0])


# --------------------------------------------------------------------------------------------- the kernel, on the CPU

# The kernel body is plain C++; these few lines stand in for the CUDA built-ins it uses, so the very
# source NVRTC compiles runs here, one "thread" after another over the whole launch grid.
HOST_PRELUDE = r"""
#include <cstring>
#define __global__
#define EDL_INLINE inline
static int edl_x, edl_y;
inline int edl_pixel_x() { return edl_x; }
inline int edl_pixel_y() { return edl_y; }
inline unsigned short edl_half_bits(float v) {
    _Float16 h = (_Float16)v;  // round to nearest even, like cvt.rn.f16.f32
    unsigned short bits;
    std::memcpy(&bits, &h, sizeof bits);
    return bits;
}
"""
HOST_LAUNCHER = r"""
typedef void (*EdlKernel)(const EdlParams);
extern "C" void edl_launch(EdlKernel kernel, const EdlParams* p, int grid_x, int grid_y, int block_x, int block_y) {
    for (edl_y = 0; edl_y < grid_y * block_y; ++edl_y)
        for (edl_x = 0; edl_x < grid_x * block_x; ++edl_x) kernel(*p);
}
"""


class HostKernels:
    """The Kernels protocol over the kernel source compiled for the CPU (pointers are host addresses)."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._library = library
        self.launches: list[str] = []

    def launch(self, name: str, plan: LaunchPlan, params: np.ndarray, stream_handle: int) -> None:
        self.launches.append(name)
        kernel = ctypes.cast(getattr(self._library, name), ctypes.c_void_p)
        self._library.edl_launch(kernel, ctypes.c_void_p(params.ctypes.data), *plan.grid, *plan.block)


@pytest.fixture(scope="session")
def host_library(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel source for the CPU")
    folder = tmp_path_factory.mktemp("host-kernel")
    (folder / "kernel.cpp").write_text(HOST_PRELUDE + KERNEL_BODY + layout_asserts() + HOST_LAUNCHER)
    # -ffp-contract=off: like the device's --fmad=false, no fused multiply-add.
    built = subprocess.run([compiler, "-std=c++14", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "kernel.cpp",
                            "-o", "kernel.so"], cwd=folder, capture_output=True, text=True)
    if built.returncode and "_Float16" in built.stderr:
        pytest.skip(f"{compiler} has no _Float16 (GCC 12+ / Clang 15+ do)")
    assert built.returncode == 0, built.stderr  # includes the static_asserts: struct EdlParams == PARAMS_DTYPE
    library = ctypes.CDLL(str(folder / "kernel.so"))
    library.edl_launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 4
    return library


@pytest.fixture
def host_gpu(host_library: ctypes.CDLL) -> tuple[FakeCudaDriver, HostKernels]:
    return FakeCudaDriver(FakeGpu()), HostKernels(host_library)


def same(gpu: np.ndarray, cpu: np.ndarray) -> None:
    assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
    mismatched = int((gpu != cpu).sum())
    assert mismatched == 0, f"{mismatched} of {cpu.size} values differ (max {np.abs(gpu.astype(float) - cpu).max()})"


@pytest.mark.parametrize("interpolation", ["linear", "nearest", "area"])
@pytest.mark.parametrize("resize", RESIZE_MODES)
def test_kernel_source_equals_the_cpu_path_bit_for_bit(host_gpu: tuple[FakeCudaDriver, HostKernels], resize: str,
                                                       interpolation: str) -> None:
    driver, kernels = host_gpu
    frames = [frame(641, 479, seed=1), frame(50, 30, seed=2)]  # odd, and smaller than the input
    for spec in every_output(96, 64, resize, interpolation):
        with GpuPreprocessor(spec, driver=driver, kernels=kernels) as pre:
            for image in frames:
                tensor, geometry = pre.run(image)
                expected, expected_geometry = preprocess(spec, image)
                same(tensor.to_host(), expected)
                assert geometry == expected_geometry
    assert driver.live() == 0


def test_kernel_source_on_the_yolo_case_and_a_grey_frame(host_gpu: tuple[FakeCudaDriver, HostKernels]) -> None:
    driver, kernels = host_gpu
    spec = PreprocessSpec(640, 640, **PRESETS["yolo"])
    with GpuPreprocessor(spec, driver=driver, kernels=kernels) as pre:
        for image in [frame(1920, 1080), frame(1280, 720)[:, :, 0]]:  # a 2-D frame is grey, as on the CPU path
            tensor, geometry = pre.run(image)
            expected, expected_geometry = preprocess(spec, image)
            same(tensor.to_host(), expected)
            assert geometry == expected_geometry


def test_buffers_grow_only_for_larger_frames_and_taps_follow_the_size(host_gpu: tuple[FakeCudaDriver, HostKernels]) -> None:
    driver, kernels = host_gpu
    spec = PreprocessSpec(128, 96, resize="letterbox", **IMAGENET)
    pre = GpuPreprocessor(spec, driver=driver, kernels=kernels)
    allocations = []
    pointers = set()
    for w, h in [(640, 480), (640, 480), (320, 240), (1280, 720), (1280, 720), (640, 480), (1280, 720)]:
        image = frame(w, h, seed=w + h)
        tensor, _ = pre.run(image)
        same(tensor.to_host(), preprocess(spec, image)[0])  # stale taps from the previous size would show here
        allocations.append(driver.allocations)
        pointers.add(tensor.ptr)
    # First frame: pinned + device for taps and frame, and the output. Then only 1280x720 needs a bigger frame buffer.
    assert allocations == [5, 5, 5, 7, 7, 7, 7]
    assert len(pointers) == 1 and len(kernels.launches) == 7
    pre.close()
    pre.close()
    assert driver.live() == 0
    with pytest.raises(UsageError, match="was closed"):
        pre.run(frame(64, 48))
    with pytest.raises(UsageError, match="was closed.*call to_host\\(\\) before close\\(\\)"):
        tensor.to_host()


def test_a_batch_holds_each_frame_in_its_row_as_the_cpu_path_makes_it(host_gpu: tuple[FakeCudaDriver, HostKernels]) -> None:
    driver, kernels = host_gpu
    spec = PreprocessSpec(64, 48, resize="letterbox", **IMAGENET)
    images = [frame(320, 240, seed=3), frame(200, 300, seed=4), frame(64, 48, seed=5)]
    with GpuPreprocessor(spec, driver=driver, kernels=kernels) as pre:
        tensor, geometries = pre.run_batch(images, batch=4)  # a fixed batch of 4: the last row is padding
        assert tensor.shape == (4, 3, 48, 64)
        host = tensor.to_host()
        for row, image in enumerate(images):
            expected, expected_geometry = preprocess(spec, image)
            same(host[row : row + 1], expected)
            assert geometries[row] == expected_geometry
        with pytest.raises(UsageError, match="takes 1 to 2 frames"):
            pre.run_batch(images, batch=2)


def test_out_pointer_receives_the_result_without_an_own_output(host_gpu: tuple[FakeCudaDriver, HostKernels]) -> None:
    driver, kernels = host_gpu
    spec = PreprocessSpec(64, 48, resize="center-crop", layout="NHWC", dtype="float16", **IMAGENET)
    with GpuPreprocessor(spec, driver=driver, kernels=kernels) as pre:
        engine_input = driver.malloc(pre.nbytes)
        tensor, _ = pre.run(frame(300, 200), out=np.uint64(engine_input), wait=False)  # numpy pointers are fine too
        pre.synchronize()
        assert tensor.ptr == engine_input and driver.allocations == 5  # 4 staging buffers + the engine's, no output
        interface = tensor.__cuda_array_interface__
        assert interface["shape"] == (1, 48, 64, 3) and interface["typestr"] == "<f2"
        assert interface["data"] == (engine_input, False) and interface["stream"] == pre.stream_handle
        same(np.frombuffer(driver.device[engine_input].tobytes(), np.float16).reshape(1, 48, 64, 3),
             preprocess(spec, frame(300, 200))[0])
        assert pre.last_device_ms is not None and pre.last_device_ms >= 0
        driver.free(engine_input)


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8), "frame.jpg",
                                 np.zeros((0, 10, 3), np.uint8)])
def test_bad_frames_are_usage_errors(host_gpu: tuple[FakeCudaDriver, HostKernels], bad: object) -> None:
    driver, kernels = host_gpu
    with GpuPreprocessor(PreprocessSpec(32, 32), driver=driver, kernels=kernels) as pre:
        with pytest.raises(UsageError, match="frames must be|frame is empty"):
            pre.run(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("out", [0, -5, 3.5, True, "0x7f00"])
def test_bad_out_pointers_are_usage_errors(host_gpu: tuple[FakeCudaDriver, HostKernels], out: object) -> None:
    driver, kernels = host_gpu
    with GpuPreprocessor(PreprocessSpec(32, 32), driver=driver, kernels=kernels) as pre:
        with pytest.raises(UsageError, match="out must be a CUDA device pointer") as info:
            pre.run(frame(40, 30), out=out)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------- on a real GPU


def assert_matches_cpu(gpu: np.ndarray, cpu: np.ndarray, spec: PreprocessSpec) -> None:
    """GPU output against the CPU path, to one grey level.

    The kernel repeats OpenCV's 11-bit fixed-point INTER_LINEAR arithmetic, so against x86 builds of
    OpenCV (4.10 and 5.0 checked) it is bit-exact: test_kernel_source_equals_the_cpu_path_bit_for_bit
    runs the same source on the CPU, and that is asserted here on x86_64 too. Other builds (ARM with
    NEON or the carotene HAL on Jetson) are not guaranteed to round every pixel identically, so the
    bound is one grey level of the resized uint8 image: 1 for uint8 output, |a| = scale/std after
    normalization, plus one float16 rounding step for float16 output.
    """
    assert gpu.shape == cpu.shape and gpu.dtype == cpu.dtype
    a, _ = spec.normalization()
    level = 1.0 if spec.dtype == "uint8" else float(np.abs(a).max())
    step = float(np.spacing(np.abs(cpu).max().astype(np.float16))) if spec.dtype == "float16" else 1e-6
    difference = np.abs(gpu.astype(np.float64) - cpu.astype(np.float64))
    assert difference.max() <= level + step, f"max difference {difference.max()} > {level + step} ({spec})"
    if platform.machine() == "x86_64":
        same(gpu, cpu)


def device_free_bytes() -> int:
    from cuda.bindings import runtime

    err, free, _ = runtime.cudaMemGetInfo()
    assert int(err) == 0
    return int(free)


GPU_FRAMES = [(641, 479), (1920, 1080), (200, 100)]


@pytest.mark.gpu
@pytest.mark.parametrize("resize", RESIZE_MODES)
def test_gpu_matches_the_cpu_path(resize: str) -> None:
    for spec in every_output(640, 640, resize):
        with GpuPreprocessor(spec) as pre:
            for w, h in GPU_FRAMES:
                image = frame(w, h, seed=w)
                tensor, geometry = pre.run(image)
                expected, expected_geometry = preprocess(spec, image)
                assert_matches_cpu(tensor.to_host(), expected, spec)
                assert geometry == expected_geometry


@pytest.mark.gpu
@pytest.mark.parametrize("interpolation", ["nearest", "area"])
def test_gpu_nearest_and_area(interpolation: str) -> None:
    for spec in every_output(320, 256, "letterbox", interpolation):
        with GpuPreprocessor(spec) as pre:
            for w, h in GPU_FRAMES:
                image = frame(w, h, seed=h)
                tensor, _ = pre.run(image)
                assert_matches_cpu(tensor.to_host(), preprocess(spec, image)[0], spec)


@pytest.mark.gpu
def test_gpu_buffers_out_pointer_stream_and_worker_thread() -> None:
    from cuda.bindings import runtime

    spec = PreprocessSpec(640, 640, **PRESETS["yolo"])
    with GpuPreprocessor(spec) as pre:
        sizes = [(1280, 720), (640, 480), (1920, 1080), (1280, 720), (1920, 1080)]
        for w, h in sizes:  # shrinking and growing frames: buffers reused or grown, taps re-uploaded
            image = frame(w, h, seed=w)
            tensor, geometry = pre.run(image)
            assert_matches_cpu(tensor.to_host(), preprocess(spec, image)[0], spec)
            assert geometry == spec.geometry(w, h)
            assert pre.last_device_ms is not None and pre.last_device_ms > 0
        err, engine_input = runtime.cudaMalloc(pre.nbytes)
        assert int(err) == 0
        try:
            image = frame(1280, 720, seed=9)
            tensor, _ = pre.run(image, out=int(engine_input), wait=False)
            assert tensor.__cuda_array_interface__["stream"] not in (None, 0)
            assert tensor.ptr == int(engine_input)
            assert_matches_cpu(tensor.to_host(), preprocess(spec, image)[0], spec)
        finally:
            runtime.cudaFree(engine_input)
        results: list[np.ndarray] = []
        worker = threading.Thread(target=lambda: results.append(pre.run(image)[0].to_host()))
        worker.start()
        worker.join()
        assert_matches_cpu(results[0], preprocess(spec, image)[0], spec)


@pytest.mark.gpu
def test_gpu_close_gives_the_memory_back() -> None:
    spec = PreprocessSpec(640, 640, **PRESETS["yolo"])
    with GpuPreprocessor(spec) as warm:  # the context and the kernel module stay for the process: not ours to free
        warm.run(frame(64, 48))
    baseline = device_free_bytes()
    pre = GpuPreprocessor(spec)
    big = frame(3840, 2160)
    pre.run(big)
    in_use = baseline - device_free_bytes()
    assert in_use >= big.nbytes + pre.nbytes  # the frame and output buffers really were on the device
    pre.close()
    pre.close()
    # Back to the baseline, give or take the driver's 2 MiB allocation granularity (and, on a Jetson, whose
    # "device" memory is system memory, a little movement by other processes).
    assert device_free_bytes() >= baseline - (4 << 20)
