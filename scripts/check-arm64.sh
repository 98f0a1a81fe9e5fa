#!/usr/bin/env bash
# Check the Raspberry Pi install on arm64 without a Pi: build a Debian arm64 root (debootstrap +
# qemu-user-static through binfmt_misc), run scripts/install-pi.sh in it (its apt list, pip, the
# autostart entry), check with `ldd` that no library the Qt platform plugins need is missing, then
# run `autotrader doctor`, `autotrader screenshot` (offscreen) and a headless sim minute there,
# and print the versions it got. Slow under emulation (tens of minutes the first time); the root
# is kept under CACHE_DIR so a second run only refreshes the checkout and runs the checks.
#
#   sudo scripts/check-arm64.sh [--suite bookworm|trixie] [CACHE_DIR]   (default /var/tmp)
#
# Needs root (debootstrap, chroot, mounts) on a Debian-family host with network access to a
# Debian mirror and PyPI. Not part of the test suite or CI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
suite=bookworm
cache=/var/tmp
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) suite="${2:?--suite needs bookworm or trixie}"; shift 2 ;;
        -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "check-arm64.sh: unknown option $1" >&2; exit 2 ;;
        *) cache="$1"; shift ;;
    esac
done
case "$suite" in bookworm|trixie) ;; *) echo "check-arm64.sh: --suite is bookworm or trixie" >&2; exit 2 ;; esac

die() { echo "check-arm64.sh: $*" >&2; exit 1; }
say() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
[ "$(id -u)" = 0 ] || die "run it as root (debootstrap, chroot and mounts need it)"
command -v apt-get >/dev/null || die "needs a Debian-family host (apt-get)"

root="$cache/autotrader-arm64/$suite"
user=pi
checkout="/home/$user/autotrader"
started=$(date +%s)

# --- Host tools and binfmt_misc ------------------------------------------------------------------
say "host: $(. /etc/os-release; echo "$PRETTY_NAME") $(uname -m)"
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "$(uname -m)" != aarch64 ]; then
    command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
    command -v update-binfmts >/dev/null || need+=(binfmt-support)
fi
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing on the host: ${need[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
if [ "$(uname -m)" != aarch64 ]; then
    # Every arm64 program in the root (dpkg's maintainer scripts, pip, the app's worker processes)
    # is started by the kernel through binfmt_misc; running single binaries with
    # `qemu-aarch64-static -L` would not follow their children, so without binfmt there is no check.
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
            die "binfmt_misc is not available here (cannot mount /proc/sys/fs/binfmt_misc)"
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 ||
        die "cannot register qemu-aarch64 with binfmt_misc"
    grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "the qemu-aarch64 binfmt entry is disabled"
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
        die "qemu-aarch64 is registered without the F flag, so it cannot run inside a chroot"
    echo "binfmt_misc: qemu-aarch64 $(grep ^flags /proc/sys/fs/binfmt_misc/qemu-aarch64)," \
         "$(qemu-aarch64-static --version | head -1)"
fi

# The Debian mirror this host's apt already uses (deb822 .sources or one-line sources.list).
mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v security | head -1 || true)"
[ -n "$mirror" ] || mirror="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1 || true)"
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
echo "mirror: $mirror"

# --- The arm64 root (cached) ---------------------------------------------------------------------
mkdir -p "$cache/autotrader-arm64"
if [ ! -f "$root/.autotrader-root-done" ]; then
    say "debootstrap $suite arm64 into $root (first run: slow)"
    if [ -d "$root" ]; then  # an interrupted earlier run: start over, but never outside the cache
        case "$root" in "$cache"/autotrader-arm64/*) rm -rf --one-file-system "$root" ;; esac
    fi
    debootstrap --arch=arm64 --foreign --variant=minbase --include=sudo,ca-certificates \
        "$suite" "$root" "$mirror"
    chroot "$root" /debootstrap/debootstrap --second-stage
    touch "$root/.autotrader-root-done"
else
    echo "reusing the root in $root"
fi

mounted=()
cleanup() {
    local i
    for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount_in() {  # mount_in TARGET mount-args...
    local target="$root$1"; shift
    mountpoint -q "$target" || { mount "$@" "$target"; mounted+=("$target"); }
}
mount_in /proc -t proc proc
mount_in /sys -t sysfs sysfs
mount_in /dev --bind /dev
mount_in /dev/pts --bind /dev/pts
mount_in /dev/shm -t tmpfs tmpfs   # the app's worker processes use POSIX semaphores
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A host behind a TLS-inspecting proxy tells pip its CA bundle (PIP_CERT and friends); pip in the
# root needs the same bundle to reach PyPI. Elsewhere pip's own certificates are used.
ca="${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}"
ca_env=()
if [ -n "$ca" ] && [ -f "$ca" ]; then
    cp "$ca" "$root/etc/ssl/host-ca-bundle.crt"
    ca_env=(PIP_CERT=/etc/ssl/host-ca-bundle.crt SSL_CERT_FILE=/etc/ssl/host-ca-bundle.crt)
    echo "pip in the root uses the host's CA bundle ($ca)"
fi

# Every step in the root runs under `timeout` (limit=SECONDS before a call overrides the default).
in_root() { timeout "${limit:-600}" chroot "$root" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "${ca_env[@]}" "$@"; }
as_pi() { in_root runuser -u "$user" -- env HOME="/home/$user" USER="$user" "$@"; }

in_root id -u "$user" >/dev/null 2>&1 || in_root useradd -m -s /bin/bash "$user"

# This checkout (tracked and untracked files, not .venv or other ignored ones); the root's .venv
# survives, so the second run reinstalls nothing.
say "copying the checkout to $checkout"
mkdir -p "$root$checkout"
find "$root$checkout" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
git -C "$here" ls-files -z --cached --others --exclude-standard |
    (cd "$here" && tar --null -T - -cf -) | tar -C "$root$checkout" -xf -
in_root chown -R "$user:$user" "$checkout"

# --- The install script, as `sudo scripts/install-pi.sh` would run it --------------------------
# (root with SUDO_USER: qemu through binfmt cannot honour sudo's setuid bit, so sudo itself is
# the one part of the Pi path this cannot exercise)
say "install-pi.sh --dry-run"
in_root env SUDO_USER="$user" bash "$checkout/scripts/install-pi.sh" --dry-run
say "install-pi.sh"
limit=3600 in_root env SUDO_USER="$user" bash "$checkout/scripts/install-pi.sh"
say "install-pi.sh again (must change nothing)"
second="$(in_root env SUDO_USER="$user" bash "$checkout/scripts/install-pi.sh")"
echo "$second"
grep -q '^Nothing changed' <<<"$second" || die "the second run of install-pi.sh changed something"

venv="$checkout/.venv"
say "ldd on the Qt platform plugins (xcb, wayland) and their integrations"
qt="$(as_pi "$venv/bin/python" -c 'import PySide6, os; print(os.path.join(os.path.dirname(PySide6.__file__), "Qt"))')"
missing="$(in_root bash -c '
    qt="$1"; cd "$qt/plugins"
    for f in platforms/libqxcb.so platforms/libqwayland*.so xcbglintegrations/*.so \
             wayland-shell-integration/*.so wayland-graphics-integration-client/*.so \
             wayland-decoration-client/*.so platformthemes/*.so; do
        # the GTK theme plugin is optional (Qt loads it only when asked to follow GTK settings)
        [ -e "$f" ] && [ "$f" != platformthemes/libqgtk3.so ] || continue
        LD_LIBRARY_PATH="$qt/lib" ldd "$f" | awk -v f="$f" "/not found/ {print f \": \" \$1}"
    done' _ "$qt")"
# Qt modules PySide6-Essentials leaves out (e.g. VirtualKeyboard for its input plugin) are not
# system packages; anything else missing is a gap in install-pi.sh's list.
gaps="$(grep -v ': libQt6' <<<"$missing" || true)"
echo "plugins checked under $qt/plugins:"
in_root bash -c 'cd "$1/plugins" && ls platforms/*.so xcbglintegrations/*.so wayland-shell-integration/*.so | xargs' _ "$qt"
echo "not found: ${missing:-nothing}"
[ -z "$gaps" ] || die "libraries missing after install-pi.sh: $gaps"

data="/home/$user/check-data"
# Under emulation everything runs 10-30x slower than on a Pi: the engine gets 15 minutes to start.
run_app() { as_pi env AUTOTRADER_DATA_DIR="$data" QT_QPA_PLATFORM=offscreen AUTOTRADER_START_TIMEOUT_S=900 \
    "$venv/bin/autotrader" "$@"; }
in_root rm -rf "$data"

say "autotrader doctor"
run_app doctor

say "autotrader screenshot (offscreen)"
limit=900 run_app screenshot --size 800x480 "/home/$user/arm64-800x480.png"
cp "$root/home/$user/arm64-800x480.png" "$cache/autotrader-arm64/arm64-800x480.png"
echo "copied to $cache/autotrader-arm64/arm64-800x480.png"

say "headless sim minute: a card, then autotrader run --sim --headless"
run_app add NVDA sma_crossover 10000 --sim --param fast=2 --param slow=3
limit=900 run_app run --sim --headless --speed 30 --exit-after 240
run_app status --sim
run_app status --sim --json > "$root/tmp/status.json"
python3 - "$root/tmp/status.json" <<'EOF'
import json, sys
status = json.load(open(sys.argv[1]))
cycle = status.get("last_cycle") or {}
print("last cycle:", json.dumps(cycle) if cycle else "none")
sys.exit(0 if cycle else 1)
EOF

say "versions"
as_pi "$venv/bin/python" - <<'EOF'
import os, platform
import PySide6
from PySide6 import QtCore
print("python     ", platform.python_version())
print("PySide6    ", PySide6.__version__, "(Qt", QtCore.qVersion() + ")")
print("glibc      ", os.confstr("CS_GNU_LIBC_VERSION"))
print("uname -m   ", platform.machine())
EOF
echo "debian      $(cat "$root/etc/debian_version") ($suite)"
echo "elapsed     $(( $(date +%s) - started )) s"
echo "check-arm64: ok"
