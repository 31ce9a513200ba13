#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Make JetPack's TensorRT Python bindings importable in a venv made without --system-site-packages,
# by symlinking them from /usr/lib/python3.X/dist-packages into the venv's site-packages.
#
#   jetson/link-tensorrt.sh [VENV]        (default: the active venv, $VIRTUAL_ENV)
#
# The bindings are compiled for the system Python (3.10 on JetPack 6), so the venv must be that version.
# Recreating the venv with --system-site-packages does the same job and also exposes JetPack's OpenCV.
# Safe to re-run: existing links are replaced.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

case "${1:-}" in
    -h | --help)
        sed -n 's/^#   //p' "$0"
        exit 0
        ;;
esac
VENV="${1:-${VIRTUAL_ENV:-}}"
[ -n "$VENV" ] || die 2 "no venv given and none active: jetson/link-tensorrt.sh /path/to/venv"
[ -x "$VENV/bin/python" ] || die 2 "$VENV is not a venv (no $VENV/bin/python)"

PYVER="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
DIST="$ROOT/usr/lib/python$PYVER/dist-packages"

# tensorrt, and on TensorRT 10 also tensorrt_lean and tensorrt_dispatch, plus their dist-info (so pip sees them).
ENTRIES=()
for entry in "$DIST"/tensorrt "$DIST"/tensorrt_* "$DIST"/tensorrt-*; do
    if [ -e "$entry" ]; then ENTRIES+=("$entry"); fi
done
if [ ${#ENTRIES[@]} -eq 0 ]; then
    OTHERS="$(cd "$ROOT/usr/lib" 2>/dev/null && for d in python3*/dist-packages/tensorrt; do [ -e "$d" ] && say "${d%%/*}"; done)" || true
    if [ -n "$OTHERS" ]; then
        die 3 "TensorRT's bindings exist only for $(tr '\n' ' ' <<<"$OTHERS")and $VENV is Python $PYVER;" \
            "make the venv with that Python (JetPack 5: use jetson/Dockerfile.jp5)"
    fi
    die 3 "no TensorRT Python bindings in $DIST: sudo apt-get install python3-libnvinfer"
fi

for entry in "${ENTRIES[@]}"; do
    ln -sfn "$entry" "$SITE/$(basename "$entry")"
    say "linked $SITE/$(basename "$entry") -> $entry"
done
VERSION="$("$VENV/bin/python" -c 'import tensorrt; print(getattr(tensorrt, "__version__", "?"))')" ||
    die 1 "linked, but import tensorrt fails in $VENV (the error is above)"
say "import tensorrt works in $VENV: TensorRT $VERSION"
