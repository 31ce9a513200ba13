"""The GPU preprocessing kernel: its CUDA C source, its argument layout, and how to compute its arguments.

One thread per output pixel does the whole :class:`~edgedl.preprocess.PreprocessSpec` in one pass:
resize (stretch, letterbox or center-crop), BGR→RGB, ``pixel * a + b`` and the NCHW/NHWC store as
float32, float16 or uint8. Nothing here touches CUDA, so all of it is checked on machines without a GPU.

Where each output pixel samples the frame is worked out here, in Python, as one *tap* per output
column and one per output row (two source indices and their 11-bit weights), exactly as OpenCV's
``cv2.resize`` computes its own coefficient tables for ``INTER_LINEAR`` and ``INTER_NEAREST``. The
kernel then repeats OpenCV's fixed-point arithmetic, so its uint8 result equals the CPU path's bit
for bit, and with ``--fmad=false`` its float results too. The tables depend only on the frame size:
they are computed and uploaded once per size, not per frame.

``INTER_AREA`` is not done on the GPU: for ``interpolation="area"`` OpenCV resizes (and pads or
crops) the frame on the CPU, exactly as :func:`edgedl.preprocess.resize_frame` does, and the kernel
does the colour order, normalization, layout and dtype from that image (``LaunchPlan.cpu_resize``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgedl.errors import DeviceError, UsageError
from edgedl.preprocess import Geometry, PreprocessSpec

#: OpenCV's INTER_RESIZE_COEF_BITS: interpolation weights are integers out of 2**11.
WEIGHT_ONE = 1 << 11
#: Threads per block (x, y): a warp spans 32 output columns, so reads and planar writes coalesce.
BLOCK = (32, 8)

#: The kernel's one argument, field for field as ``struct EdlParams`` in :data:`KERNEL_BODY`.
PARAMS_DTYPE = np.dtype([
    ("src", np.uint64), ("dst", np.uint64), ("columns", np.uint64), ("rows", np.uint64),
    ("src_pitch", np.int32), ("width", np.int32), ("height", np.int32), ("swap_rb", np.int32), ("pad_value", np.int32),
    ("a", np.float32, (3,)), ("b", np.float32, (3,)),
], align=True)

# The body is plain C++ that also compiles on a host compiler; the device-only pieces it calls
# (EDL_INLINE, edl_pixel_x/y, edl_half_bits) come from DEVICE_PRELUDE.
KERNEL_BODY = r"""
// A source index pair and their weights (out of 2048) for one output column or row; first < 0 marks padding.
struct alignas(16) EdlTap {
    int first;
    int second;
    int w_first;
    int w_second;
};

struct EdlParams {
    const unsigned char* src;  // the frame: BGR, 3 bytes per pixel, rows src_pitch bytes apart
    void* dst;                 // 1 x C x H x W or 1 x H x W x C
    const EdlTap* columns;     // one per output column
    const EdlTap* rows;        // one per output row
    int src_pitch;
    int width;                 // output size
    int height;
    int swap_rb;               // 1: output channel c comes from frame channel 2 - c (BGR -> RGB)
    int pad_value;
    float a[3];                // out = value * a + b, per output channel
    float b[3];
};

// One channel of one output pixel, with OpenCV's INTER_LINEAR fixed-point arithmetic for uint8 images:
// a horizontal pass to 2048x-scaled integers, then a vertical pass that drops 4 and 16 bits and rounds
// the last 2. Doing the same here (rather than float bilinear) makes the result equal to cv2.resize's.
EDL_INLINE int edl_sample(const EdlParams& p, const EdlTap& col, const EdlTap& row, int channel) {
    const unsigned char* upper = p.src + (long long)row.first * p.src_pitch;
    const unsigned char* lower = p.src + (long long)row.second * p.src_pitch;
    const int left = 3 * col.first + channel;
    const int right = 3 * col.second + channel;
    const int h0 = upper[left] * col.w_first + upper[right] * col.w_second;
    const int h1 = lower[left] * col.w_first + lower[right] * col.w_second;
    const int v = (((row.w_first * (h0 >> 4)) >> 16) + ((row.w_second * (h1 >> 4)) >> 16) + 2) >> 2;
    return v > 255 ? 255 : v;
}

EDL_INLINE void edl_store(float* out, long long i, int v, float a, float b) { out[i] = (float)v * a + b; }
EDL_INLINE void edl_store(unsigned short* out, long long i, int v, float a, float b) { out[i] = edl_half_bits((float)v * a + b); }
EDL_INLINE void edl_store(unsigned char* out, long long i, int v, float, float) { out[i] = (unsigned char)v; }

template <typename T, bool kPlanar>
EDL_INLINE void edl_preprocess(const EdlParams& p) {
    const int x = edl_pixel_x();
    const int y = edl_pixel_y();
    if (x >= p.width || y >= p.height) return;
    const EdlTap col = p.columns[x];
    const EdlTap row = p.rows[y];
    const bool pad = col.first < 0 || row.first < 0;
    int v[3];
    for (int c = 0; c < 3; ++c) v[c] = pad ? p.pad_value : edl_sample(p, col, row, c);
    if (p.swap_rb) {  // a swap rather than v[2 - c] keeps v in registers (a computed index spills it to local memory)
        const int blue = v[0];
        v[0] = v[2];
        v[2] = blue;
    }
    T* out = static_cast<T*>(p.dst);
    const long long pixel = (long long)y * p.width + x;
    const long long plane = (long long)p.width * p.height;
    for (int c = 0; c < 3; ++c) edl_store(out, kPlanar ? c * plane + pixel : 3 * pixel + c, v[c], p.a[c], p.b[c]);
}

#define EDL_KERNEL(NAME, TYPE, PLANAR) \
    extern "C" __global__ void NAME(const EdlParams p) { edl_preprocess<TYPE, PLANAR>(p); }
EDL_KERNEL(edl_preprocess_nchw_float32, float, true)
EDL_KERNEL(edl_preprocess_nchw_float16, unsigned short, true)
EDL_KERNEL(edl_preprocess_nchw_uint8, unsigned char, true)
EDL_KERNEL(edl_preprocess_nhwc_float32, float, false)
EDL_KERNEL(edl_preprocess_nhwc_float16, unsigned short, false)
EDL_KERNEL(edl_preprocess_nhwc_uint8, unsigned char, false)
"""

DEVICE_PRELUDE = r"""
#define EDL_INLINE __device__ __forceinline__
EDL_INLINE int edl_pixel_x() { return (int)(blockIdx.x * blockDim.x + threadIdx.x); }
EDL_INLINE int edl_pixel_y() { return (int)(blockIdx.y * blockDim.y + threadIdx.y); }
// Round to nearest even, as numpy's float32 -> float16 cast does; inline PTX so no header is needed.
EDL_INLINE unsigned short edl_half_bits(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
"""


def layout_asserts() -> str:
    """``static_assert`` lines that fail compilation if ``struct EdlParams`` and :data:`PARAMS_DTYPE` disagree."""
    lines = [f'static_assert(sizeof(EdlParams) == {PARAMS_DTYPE.itemsize}, "EdlParams size differs from PARAMS_DTYPE");']
    for name in PARAMS_DTYPE.names:
        offset = PARAMS_DTYPE.fields[name][1]
        lines.append(f'static_assert(__builtin_offsetof(EdlParams, {name}) == {offset}, "EdlParams.{name} is misplaced");')
    return "\n".join(lines) + "\n"


#: What NVRTC compiles: every kernel of :data:`KERNEL_NAMES` in one module.
KERNEL_SOURCE = DEVICE_PRELUDE + KERNEL_BODY + layout_asserts()


def kernel_name(layout: str, dtype: str) -> str:
    """The entry point for an output layout (``NCHW``/``NHWC``) and dtype (``float32``/``float16``/``uint8``)."""
    return f"edl_preprocess_{layout.lower()}_{dtype}"


KERNEL_NAMES: tuple[str, ...] = tuple(kernel_name(layout, dtype) for layout in ("NCHW", "NHWC")
                                      for dtype in ("float32", "float16", "uint8"))


def nvrtc_target(capability: tuple[int, int], supported: Sequence[int], nvrtc_version: str) -> tuple[str, bool]:
    """The ``--gpu-architecture`` for a device, and whether NVRTC emits a cubin (True) or PTX (False).

    A cubin for the device's own architecture when this NVRTC knows it; otherwise PTX for the newest
    architecture it knows below the device, which the driver compiles on load (a GPU newer than NVRTC).
    """
    cc = capability[0] * 10 + capability[1]
    if cc in supported:
        return f"sm_{cc}", True
    older = [arch for arch in supported if arch < cc]
    if not older:
        raise DeviceError(f"NVRTC {nvrtc_version} cannot compile for sm_{cc} (it supports sm_{min(supported)} and newer)",
                          fix="install the NVRTC of the device's CUDA (JetPack ships it), or preprocess on the CPU")
    return f"compute_{max(older)}", False


def compile_options(architecture: str) -> list[bytes]:
    """NVRTC options for :data:`KERNEL_SOURCE`."""
    # --fmad=false: no fused multiply-add, so ``v * a + b`` rounds twice like numpy's float32 multiply and add.
    return [f"--gpu-architecture={architecture}".encode(), b"--fmad=false", b"--std=c++14"]


@dataclass(frozen=True)
class LaunchPlan:
    """Everything the kernel needs for one frame size: taps, grid, and what the frame becomes before upload."""

    geometry: Geometry
    source_width: int  # the image the kernel samples: the frame, or (cpu_resize) the spec-size image from OpenCV
    source_height: int
    cpu_resize: bool
    width: int  # output size
    height: int
    taps: np.ndarray  # int32 (width + height, 4): the column taps, then the row taps (one upload)
    grid: tuple[int, int]
    block: tuple[int, int] = BLOCK

    @property
    def columns(self) -> np.ndarray:
        """One tap (first, second, w_first, w_second) per output column; first = -1 is padding."""
        return self.taps[: self.width]

    @property
    def rows(self) -> np.ndarray:
        """One tap per output row."""
        return self.taps[self.width :]


def _axis_taps(source: int, resized: int, nearest: bool, clamp_weights: bool) -> np.ndarray:
    """OpenCV's source indices and weights along one axis of a ``source`` -> ``resized`` resize, as (resized, 4)."""
    scale = 1.0 / (resized / source)  # OpenCV inverts the dst/src ratio rather than dividing src/dst
    d = np.arange(resized, dtype=np.float64)
    taps = np.empty((resized, 4), dtype=np.int32)
    if nearest:  # INTER_NEAREST: floor(d * scale), no half-pixel shift
        s = np.minimum(np.floor(d * scale).astype(np.int64), source - 1)
        taps[:, 0] = taps[:, 1] = s
        taps[:, 2], taps[:, 3] = WEIGHT_ONE, 0
        return taps
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)  # half-pixel centres, rounded to float as OpenCV does
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    if clamp_weights:  # OpenCV's horizontal pass pins border columns to one pixel; its vertical pass does not
        outside = (s < 0) | (s >= source - 1)
        f[outside] = 0
    taps[:, 0] = np.clip(s, 0, source - 1)
    taps[:, 1] = np.clip(s + 1, 0, source - 1)
    taps[:, 2] = np.rint((np.float32(1) - f) * np.float32(WEIGHT_ONE))
    taps[:, 3] = np.rint(f * np.float32(WEIGHT_ONE))
    return taps


def _placed_taps(source: int, resized: int, offset: int, size: int, nearest: bool, clamp_weights: bool) -> np.ndarray:
    """Taps for ``size`` output positions of a resize placed at ``offset`` (padding outside it, cropped beyond)."""
    taps = np.tile(np.array([-1, -1, 0, 0], dtype=np.int32), (size, 1))
    inside = np.arange(size) - offset
    keep = (inside >= 0) & (inside < resized)
    taps[keep] = _axis_taps(source, resized, nearest, clamp_weights)[inside[keep]]
    return taps


def plan_launch(spec: PreprocessSpec, frame_width: int, frame_height: int) -> LaunchPlan:
    """The kernel's arguments for a ``frame_width x frame_height`` frame, from the same geometry as the CPU path."""
    geometry = spec.geometry(frame_width, frame_height)
    cpu_resize = spec.interpolation == "area"
    if cpu_resize or spec.resize == "stretch":
        source = (spec.width, spec.height) if cpu_resize else (frame_width, frame_height)
        resized, offset = (spec.width, spec.height), (0, 0)
    else:
        source = (frame_width, frame_height)
        resized, offset = spec.resized_size(geometry), (int(geometry.offset_x), int(geometry.offset_y))
        if min(resized) == 0:
            raise UsageError(f"a {frame_width}x{frame_height} frame letterboxed into {spec.width}x{spec.height} would be "
                             f"{resized[0]}x{resized[1]} pixels", fix="crop the frame, or use resize='stretch'")
    nearest = spec.interpolation == "nearest"
    columns = _placed_taps(source[0], resized[0], offset[0], spec.width, nearest, clamp_weights=True)
    rows = _placed_taps(source[1], resized[1], offset[1], spec.height, nearest, clamp_weights=False)
    grid = (-(-spec.width // BLOCK[0]), -(-spec.height // BLOCK[1]))
    return LaunchPlan(geometry, source[0], source[1], cpu_resize, spec.width, spec.height,
                      np.concatenate([columns, rows]), grid)
