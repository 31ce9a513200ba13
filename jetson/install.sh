#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Install edgedl on a JetPack 6 Jetson (Orin, Ubuntu 22.04, Python 3.10) so it can use JetPack's TensorRT.
#
#   jetson/install.sh              install into /opt/edgedl (venv, camera app), then run edgedl doctor
#   jetson/install.sh --check      only say whether this device can take the native install, and what is missing
#
# Safe to re-run: every step checks first or is a no-op the second time. See jetson/README.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

usage() {
    cat <<EOF
usage: $(basename "$0") [options]

  --check          report what this device is and what the install would do; change nothing
  --prefix DIR     where the venv and the camera app go (default /opt/edgedl)
  --from SPEC      what pip installs (default: this checkout with the tensorrt extra, "${REPO}[tensorrt]")
  --require LIST   capabilities edgedl doctor must find at the end (default tensorrt,cuda,gstreamer)
  --jetpack N      trust N as the JetPack major release (containers without /etc/nv_tegra_release)
  --no-apt         never run apt-get; stop with the command to run instead
  --no-doctor      skip the final edgedl doctor check (container builds, which have no GPU)
  --recreate       delete and recreate the venv (needed when the system Python changed)
  -h, --help       this text

Environment: PYTHON (default /usr/bin/python3), EDGEDL_ROOT (read device files from another tree; implies --check).
EOF
}

CHECK=0
PREFIX=/opt/edgedl
SPEC="${REPO}[tensorrt]"
REQUIRE=tensorrt,cuda,gstreamer
JETPACK=""
APT=1
DOCTOR=1
RECREATE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --check) CHECK=1 ;;
        --prefix | --from | --require | --jetpack)
            [ $# -ge 2 ] || die 2 "$1 needs a value (see --help)"
            case "$1" in
                --prefix) PREFIX="$2" ;;
                --from) SPEC="$2" ;;
                --require) REQUIRE="$2" ;;
                --jetpack) JETPACK="$2" ;;
            esac
            shift
            ;;
        --no-apt) APT=0 ;;
        --no-doctor) DOCTOR=0 ;;
        --recreate) RECREATE=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die 2 "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[ -z "$ROOT" ] || CHECK=1
PYTHON="${PYTHON:-/usr/bin/python3}"
VENV="$PREFIX/venv"

# ---- 1. Which device, and can it take the native install?
L4T="$(l4t_release)"
[ -n "$JETPACK" ] || JETPACK="$(jetpack_major "$L4T")"
say "device:   $(jetson_model)"
say "L4T:      ${L4T:-none (no /etc/nv_tegra_release)}; JetPack ${JETPACK:-unknown}"
case "$JETPACK" in
    6 | 7) ;;
    5) die 3 "JetPack 5 ships Python 3.8 and edgedl needs 3.10+: use the container instead:" \
        "docker build -f jetson/Dockerfile.jp5 -t edgedl:jp5 . (jetson/README.md, 'JetPack 5')" ;;
    4) die 3 "JetPack 4 (Python 3.6, TensorRT 8.2) is too old for edgedl; Orin modules take JetPack 6" ;;
    "") die 3 "not a Jetson (no /etc/nv_tegra_release): on other machines run pip install edgedl" ;;
    *) die 3 "JetPack $JETPACK is not one this script knows (5, 6 or 7)" ;;
esac

command -v "$PYTHON" >/dev/null 2>&1 || die 3 "$PYTHON not found: sudo apt-get install python3"
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die 3 "$PYTHON is Python $PYVER; edgedl needs 3.10 or newer"
say "python:   $PYTHON ($PYVER)"

# ---- 2. System packages: TensorRT's Python bindings, a GStreamer-enabled OpenCV, venv support, GStreamer.
DIST="$ROOT/usr/lib/python$PYVER/dist-packages"
MISSING=()
"$PYTHON" -c 'import ensurepip' >/dev/null 2>&1 || MISSING+=(python3-venv)
# SD-card images may come without JetPack's CUDA; TensorRT's bindings need its runtime libraries.
[ -e "$ROOT/usr/local/cuda" ] || MISSING+=(nvidia-cuda)
[ -e "$DIST/tensorrt" ] || MISSING+=(python3-libnvinfer)
# JetPack's OpenCV lives in python3.X/dist-packages, Ubuntu's python3-opencv in python3/dist-packages.
if [ ! -e "$DIST/cv2" ] && ! compgen -G "$ROOT/usr/lib/python3/dist-packages/cv2*" >/dev/null; then
    MISSING+=(python3-opencv)
fi
if command -v gst-inspect-1.0 >/dev/null 2>&1; then
    gst-inspect-1.0 rtspsrc >/dev/null 2>&1 || MISSING+=(gstreamer1.0-plugins-good)
    gst-inspect-1.0 h264parse >/dev/null 2>&1 || MISSING+=(gstreamer1.0-plugins-bad)
else
    MISSING+=(gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
fi
if [ -e "$DIST/tensorrt" ]; then say "TensorRT: Python bindings in $DIST"; else say "TensorRT: no Python bindings for $PYVER yet"; fi
APT_COMMAND="sudo apt-get update && sudo apt-get install -y --no-install-recommends ${MISSING[*]:-}"
if [ "$CHECK" -eq 1 ]; then
    if [ ${#MISSING[@]} -gt 0 ]; then say "apt:      would install ${MISSING[*]}"; else say "apt:      nothing missing"; fi
    say "venv:     $VENV (--system-site-packages, so JetPack's TensorRT and OpenCV are visible)"
    say "ready:    JetPack $JETPACK takes the native install; run $(basename "$0") without --check"
    exit 0
fi
if [ ${#MISSING[@]} -gt 0 ]; then
    [ "$APT" -eq 1 ] || die 3 "missing system packages; run: $APT_COMMAND"
    say "==> apt-get install ${MISSING[*]}"
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends "${MISSING[@]}"
fi

# ---- 3. A venv that sees the system's dist-packages (TensorRT and OpenCV come from JetPack, not pip).
if [ ! -d "$PREFIX" ] || [ ! -w "$PREFIX" ]; then
    as_root install -d -o "$(id -u)" -g "$(id -g)" "$PREFIX"
fi
if [ -x "$VENV/bin/python" ]; then
    VENV_VER="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo broken)"
    if [ "$RECREATE" -eq 1 ] || [ "$VENV_VER" != "$PYVER" ]; then
        [ "$RECREATE" -eq 1 ] || die 1 "$VENV is Python $VENV_VER, $PYTHON is $PYVER: rerun with --recreate"
        say "==> removing $VENV"
        rm -rf "$VENV"
    fi
fi
# On an existing venv this only rewrites pyvenv.cfg (include-system-site-packages = true); packages stay.
say "==> venv $VENV"
"$PYTHON" -m venv --system-site-packages "$VENV"

# ---- 4. edgedl. NumPy stays below 2 because JetPack's OpenCV and TensorRT bindings are built against
# NumPy 1.x; cuda-python stays on JetPack's CUDA major (12 on JetPack 6), since a newer major needs a newer driver.
case "$JETPACK" in
    6) CUDA_MAJOR=12 ;;
    *) CUDA_MAJOR=13 ;;
esac
CONSTRAINTS="$PREFIX/constraints.txt"
printf '%s\n' "# written by jetson/install.sh for JetPack $JETPACK" "numpy<2" \
    "cuda-python>=$CUDA_MAJOR,<$((CUDA_MAJOR + 1))" >"$CONSTRAINTS"
say "==> pip install $SPEC"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install --constraint "$CONSTRAINTS" "$SPEC"
# pip's OpenCV wheel has no GStreamer and would hide JetPack's OpenCV, which has it (no CSI cameras,
# no hardware decoding otherwise). edgedl depends on the wheel, so each run puts it back and removes it.
"$VENV/bin/python" -m pip uninstall -y opencv-python-headless opencv-python

if [ -f "$REPO/examples/camera_app.py" ]; then
    install -D -m 0644 "$REPO/examples/camera_app.py" "$PREFIX/app/camera_app.py"
    say "==> camera app in $PREFIX/app/camera_app.py"
fi

# ---- 5. Check the result.
if [ "$DOCTOR" -eq 1 ]; then
    say "==> edgedl doctor --require $REQUIRE"
    "$VENV/bin/edgedl" doctor --require "$REQUIRE" ||
        die 1 "edgedl is installed, but doctor found problems (above, each with its fix); fix them and re-run"
fi
say "done: source $VENV/bin/activate (or use $VENV/bin/edgedl); next steps in jetson/README.md"
