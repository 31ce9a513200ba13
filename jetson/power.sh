#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Jetson power helpers: the nvpmodel mode and jetson_clocks (trade-offs: jetson/README.md, "Power").
#
#   power.sh status                   mode, the modes this module has, whether clocks are pinned
#   power.sh modes                    the modes in /etc/nvpmodel.conf
#   power.sh mode ID|NAME             switch mode (sudo nvpmodel -m ID); some switches need a reboot
#   power.sh clocks on                save the current clocks, then pin them at the mode's maximum (jetson_clocks)
#   power.sh clocks off               put back the clocks saved by "clocks on"
#   power.sh clocks restore FILE      put back clocks saved with jetson_clocks --store FILE
#   power.sh clocks status            pinned or not, and jetson_clocks --show when run as root
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

STATE_DIR="${EDGEDL_STATE_DIR:-/var/lib/edgedl}"
SAVED="$STATE_DIR/jetson_clocks.conf"
CONF="$ROOT/etc/nvpmodel.conf"

usage() {
    sed -n 's/^#   //p' "$0"
}

# "ID NAME" per line, from the "< POWER_MODEL ID=0 NAME=MAXN >" headers of nvpmodel.conf.
list_modes() {
    [ -r "$CONF" ] || die 3 "no $CONF: not a Jetson, or nvpmodel is not installed"
    sed -n 's/^< *POWER_MODEL *ID=\([0-9][0-9]*\) *NAME=\([^ >]*\) *>.*/\1 \2/p' "$CONF"
}

# "NAME (id N)" from nvpmodel -q ("NV Power Mode: 15W" then the id on a line of its own).
current_mode() {
    local out name id
    command -v nvpmodel >/dev/null 2>&1 || die 3 "nvpmodel not found: not a Jetson?"
    out="$(nvpmodel -q 2>/dev/null)" || die 1 "nvpmodel -q failed"
    name="$(sed -n 's/.*NV Power Mode: *\([^ ]*\).*/\1/p' <<<"$out" | head -n 1)"
    id="$(grep -E '^[0-9]+$' <<<"$out" | head -n 1 || true)"
    say "${name:-unknown} (id ${id:-?})"
}

# on: every CPU's and the GPU's floor equals its ceiling (what jetson_clocks does); off: none; partial.
clocks_state() {
    local pinned=0 free=0 folder low high
    for folder in "$ROOT"/sys/devices/system/cpu/cpu[0-9]*/cpufreq "$ROOT"/sys/class/devfreq/*; do
        case "$folder" in
            */cpufreq) low="$folder/scaling_min_freq" high="$folder/scaling_max_freq" ;;
            *.gpu | *.gm20b | *.gp10b | *.gv11b | *.ga10b) low="$folder/min_freq" high="$folder/max_freq" ;;
            *) continue ;;
        esac
        [ -r "$low" ] && [ -r "$high" ] || continue
        if [ "$(cat "$low")" = "$(cat "$high")" ]; then pinned=$((pinned + 1)); else free=$((free + 1)); fi
    done
    if [ $((pinned + free)) -eq 0 ]; then
        say unknown
    elif [ "$free" -eq 0 ]; then
        say on
    elif [ "$pinned" -eq 0 ]; then
        say off
    else
        say partial
    fi
}

set_mode() {
    local wanted="$1" id
    id="$(list_modes | awk -v w="$wanted" '$1 == w || toupper($2) == toupper(w) { print $1; exit }')"
    [ -n "$id" ] || die 2 "no power mode '$wanted'; this module has: $(list_modes | tr '\n' ' ')"
    say "==> nvpmodel -m $id (if it asks to reboot, the new mode applies after the reboot)"
    as_root nvpmodel -m "$id"
}

clocks() {
    local action="${1:-status}"
    command -v jetson_clocks >/dev/null 2>&1 || die 3 "jetson_clocks not found: not a Jetson?"
    case "$action" in
        on)
            # Save once: a second "on" must not overwrite the dynamic state with the pinned one.
            if [ ! -f "$SAVED" ]; then
                as_root install -d "$STATE_DIR"
                as_root jetson_clocks --store "$SAVED"
            fi
            as_root jetson_clocks
            say "clocks pinned at the maximum of the current mode; 'power.sh clocks off' puts them back"
            ;;
        off)
            [ -f "$SAVED" ] || die 1 "no clocks saved in $SAVED: a reboot restores dynamic clocks"
            as_root jetson_clocks --restore "$SAVED"
            as_root rm -f "$SAVED"
            say "clocks scale with load again"
            ;;
        restore)
            [ $# -ge 2 ] && [ -f "$2" ] || die 2 "clocks restore needs a file written by jetson_clocks --store"
            as_root jetson_clocks --restore "$2"
            ;;
        status)
            say "clocks: $(clocks_state)"
            if [ "$(id -u)" -eq 0 ]; then jetson_clocks --show; fi
            ;;
        *) die 2 "clocks takes on, off, restore FILE or status" ;;
    esac
}

status() {
    local fastest
    say "device:     $(jetson_model)"
    say "power mode: $(current_mode)"
    fastest="$(list_modes | awk 'toupper($2) ~ /^MAXN/ { print $2 " (id " $1 ")"; exit }')"
    say "fastest:    ${fastest:-the highest-wattage mode below (this module has no MAXN)}"
    say "modes:      $(list_modes | awk '{ printf "%s%s=%s", sep, $1, $2; sep=", " }')"
    say "clocks:     $(clocks_state)"
}

case "${1:-status}" in
    status) status ;;
    modes) list_modes ;;
    mode)
        [ $# -ge 2 ] || die 2 "mode needs an id or a name (power.sh modes lists them)"
        set_mode "$2"
        ;;
    clocks)
        shift
        clocks "$@"
        ;;
    -h | --help) usage ;;
    *) die 2 "unknown command '$1' (power.sh --help)" ;;
esac
