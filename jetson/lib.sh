# shellcheck shell=bash
# Shared by the jetson/ scripts (sourced, not run): messages, root commands, and which Jetson this is.
#
# EDGEDL_ROOT points every device-file lookup at another tree instead of / (the tests use copies of
# real devices' files); it is unset on a device.

ROOT="${EDGEDL_ROOT:-}"

say() { printf '%s\n' "$*"; }

# die CODE MESSAGE: one line on stderr, then exit CODE (2 = bad usage, 3 = this device cannot, 1 = a step failed).
die() {
    local code="$1"
    shift
    printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2
    exit "$code"
}

# Run a command as root: directly when we are root (containers, tests), else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# The L4T release ("36.3.0") from the first line of /etc/nv_tegra_release
# ("# R36 (release), REVISION: 3.0, GCID: ..."); prints nothing when this is not a Jetson.
l4t_release() {
    local file="$ROOT/etc/nv_tegra_release" line major revision
    [ -r "$file" ] || return 0
    line=$(head -n 1 "$file")
    major=$(sed -n 's/^# R\([0-9][0-9]*\) (release).*/\1/p' <<<"$line")
    revision=$(sed -n 's/.*REVISION: \([0-9][0-9.]*\).*/\1/p' <<<"$line")
    [ -n "$major" ] && [ -n "$revision" ] && say "$major.$revision"
    return 0
}

# The JetPack major release (4, 5, 6, 7) for an L4T release; nothing for one this kit does not know.
jetpack_major() {
    case "${1%%.*}" in
        32) say 4 ;;
        34 | 35) say 5 ;;
        36) say 6 ;;
        38) say 7 ;;
    esac
}

# The device-tree model ("NVIDIA Jetson Orin Nano Developer Kit"); the kernel ends it with a NUL.
jetson_model() {
    local file="$ROOT/proc/device-tree/model"
    if [ -r "$file" ]; then
        tr -d '\000' <"$file"
    else
        say "unknown"
    fi
}
