#!/usr/bin/env bash
# Install AutoTrader on a Raspberry Pi (64-bit Raspberry Pi OS Bookworm or Trixie) or any Debian
# 12/13 desktop (arm64 or amd64): the system libraries Qt's xcb and wayland plugins load, Python's venv,
# this checkout's .venv (the one ./kiosk.sh uses), the desktop autostart entry, and screen blanking
# off so the wall stays lit through market hours. Safe to run again: it only does what is missing.
#
#   scripts/install-pi.sh             do it (asks for sudo for the system parts)
#   scripts/install-pi.sh --dry-run   print what it would do, change nothing
#   scripts/install-pi.sh --print-packages   the apt packages for this system, one a line
#
# Run it as the desktop user who will see the kiosk. Under sudo (or as root with SUDO_USER set),
# the virtual environment and the autostart entry still belong to $SUDO_USER.
set -eu

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
os_release="${AUTOTRADER_OS_RELEASE:-/etc/os-release}"  # another file only in tests
dry_run=0
print_packages=0

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        --print-packages) print_packages=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install-pi.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done

refuse() { echo "install-pi.sh: $*" >&2; exit 2; }

# --- Which system is this? ---------------------------------------------------------------------
[ -r "$os_release" ] || refuse "cannot read $os_release: this script is for Raspberry Pi OS / Debian"
ID="" ID_LIKE="" VERSION_CODENAME="" PRETTY_NAME=""
# shellcheck disable=SC1090
. "$os_release"
case " $ID $ID_LIKE " in
    *" debian "*|*" raspbian "*) ;;
    *) refuse "this is ${PRETTY_NAME:-an unknown system}, not Raspberry Pi OS or Debian." \
              "Install Qt's xcb libraries with your package manager, then run ./kiosk.sh" ;;
esac
[ "$ID" = ubuntu ] && refuse "Ubuntu is not supported by this script (its package names differ); run ./kiosk.sh"
case "$VERSION_CODENAME" in
    bookworm|trixie) ;;
    *) refuse "${PRETTY_NAME:-this Debian} (${VERSION_CODENAME:-no codename}) is not supported:" \
              "this script knows Raspberry Pi OS / Debian bookworm (12) and trixie (13)" ;;
esac
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null ||
    refuse "dpkg-query and apt-get are missing: this does not look like a Debian system"
arch="$(dpkg --print-architecture)"
case "$arch" in
    arm64|amd64) ;;
    armhf|armel) refuse "this is 32-bit Raspberry Pi OS ($arch): PySide6 publishes no 32-bit ARM wheels," \
                        "so AutoTrader needs the 64-bit Raspberry Pi OS (any Pi 3, 4, 5 or Zero 2 runs it)" ;;
    *) refuse "PySide6 publishes no wheels for $arch: AutoTrader needs arm64 or amd64" ;;
esac

# --- The apt packages ---------------------------------------------------------------------------
# The libraries Qt's xcb and wayland plugins load, each with its package, are one list:
# resources/qt-system-libraries.txt (also read by the app's start-up check and CI). Debian 13's
# 64-bit time_t transition renamed two of them; the list's third column says to what.
# scripts/check-arm64.sh installs exactly these in an arm64 root and fails if `ldd` still finds a
# missing library.
library_list="$here/resources/qt-system-libraries.txt"
[ -r "$library_list" ] || refuse "cannot read $library_list (is this a whole AutoTrader checkout?)"
column=2
[ "$VERSION_CODENAME" = trixie ] && column=3
packages=(python3 python3-venv fonts-dejavu-core)   # the virtual environment (ensurepip); text (no font ships)
while read -r package; do
    case " ${packages[*]} " in *" $package "*) ;; *) packages+=("$package") ;; esac
done < <(sed 's/#.*//' "$library_list" | awk -v c="$column" 'NF >= 2 { print (NF >= c ? $c : $2) }')

if [ "$print_packages" = 1 ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

# --- Who runs what ------------------------------------------------------------------------------
if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    user="$SUDO_USER"
else
    user="$(id -un)"
fi
if [ "$user" = "$(id -un)" ] && [ -n "${HOME:-}" ]; then home="$HOME"
else home="$(getent passwd "$user" | cut -d: -f6)"
fi
[ -n "$home" ] || refuse "cannot find the home folder of $user"

as_root() {  # a system change: directly as root, else through sudo
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
as_user() {  # a change in the desktop user's files, with that user's home and config folder
    if [ "$(id -un)" = "$user" ]; then "$@"
    else runuser -u "$user" -- env -u XDG_CONFIG_HOME HOME="$home" USER="$user" LOGNAME="$user" "$@"
    fi
}

changes=0
current="start"
trap 'echo "install-pi.sh: stopped: the $current step failed. Steps already done are kept; run it again once fixed." >&2' ERR
step() { current="$1"; printf '%-20s %s\n' "$1:" "$2"; }
would() { changes=$((changes + 1)); step "$1" "would $2"; }

echo "AutoTrader install for ${PRETTY_NAME:-Debian} ($arch), user $user, checkout $here"
[ "$dry_run" = 1 ] && echo "(dry run: nothing is changed)"

# --- 1. System packages -------------------------------------------------------------------------
missing=()
for pkg in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = installed ] || missing+=("$pkg")
done
if [ "${#missing[@]}" = 0 ]; then
    step "system packages" "all ${#packages[@]} installed"
elif [ "$dry_run" = 1 ]; then
    would "system packages" "install ${#missing[@]}: ${missing[*]}"
else
    step "system packages" "installing ${#missing[@]}: ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    changes=$((changes + 1))
fi

# --- 2. The virtual environment (scripts/bootstrap.sh, the same as ./kiosk.sh) ------------------
as_user test -w "$here" ||
    refuse "$user cannot write to $here (the .venv goes there): run it as the checkout's owner"
bootstrap_state="$(BOOTSTRAP_CHECK_ONLY=1 bash -c 'source "$1/scripts/bootstrap.sh"; echo "$bootstrap_state"' _ "$here")"
glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
pyside_note=""
case "$(uname -m)" in
    aarch64|arm64)
        # PySide6 aarch64 wheels from 6.8.1 on need glibc 2.39; pip picks the newest that fits.
        if [ -n "$glibc" ] && [ "$(printf '%s\n' "$glibc" 2.39 | sort -V | head -1)" != 2.39 ]; then
            pyside_note=" (glibc $glibc: pip takes PySide6 6.8.0.2, the newest aarch64 wheel for it)"
        fi ;;
esac
if [ "$bootstrap_state" = current ]; then
    step "virtual env" "$here/.venv is up to date"
elif [ "$dry_run" = 1 ]; then
    if [ "$bootstrap_state" = missing ]; then
        would "virtual env" "create $here/.venv and pip install AutoTrader$pyside_note"
    else
        would "virtual env" "reinstall AutoTrader into $here/.venv (pyproject.toml changed, or the last install did not finish)$pyside_note"
    fi
else
    step "virtual env" "installing AutoTrader into $here/.venv$pyside_note (a few minutes)"
    as_user bash -c 'source "$1/scripts/bootstrap.sh"' _ "$here"
    changes=$((changes + 1))
fi
if [ -x "$here/.venv/bin/python" ] && [ "$dry_run" = 0 ]; then
    step "PySide6" "$("$here/.venv/bin/python" -c 'import PySide6, PySide6.QtCore as c; print(PySide6.__version__, "(Qt", c.qVersion() + ")")')"
fi

# --- 3. Autostart entry (`autotrader install-autostart` writes it) ----------------------------
if [ "$user" = "$(id -un)" ]; then autostart_dir="${XDG_CONFIG_HOME:-$home/.config}/autostart"
else autostart_dir="$home/.config/autostart"
fi
entry="$autostart_dir/autotrader.desktop"
if [ ! -x "$here/.venv/bin/autotrader" ]; then
    would "autostart" "run .venv/bin/autotrader install-autostart ($entry)"
else
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    "$here/.venv/bin/autotrader" install-autostart --dir "$scratch" >/dev/null
    if [ -f "$entry" ] && cmp -s "$scratch/autotrader.desktop" "$entry"; then
        step "autostart" "$entry is up to date"
    elif [ "$dry_run" = 1 ]; then
        would "autostart" "write $entry (autotrader install-autostart)"
    else
        step "autostart" "$(as_user "$here/.venv/bin/autotrader" install-autostart --dir "$autostart_dir")"
        changes=$((changes + 1))
    fi
fi

# --- 4. Screen blanking off ---------------------------------------------------------------------
# The wall must stay lit while the market is open and nobody touches it; the kiosk's own night
# mode darkens it off-hours. raspi-config knows which of X11, wayfire and labwc this Pi runs and
# where each keeps its idle setting (X: /etc/X11/xorg.conf.d/10-blanking.conf; wayfire:
# dpms_timeout=-1 in ~/.config/wayfire.ini; labwc: no swayidle in ~/.config/labwc/autostart), so
# it does the change rather than a copy of its rules here. get_blanking prints 1 when off.
if ! command -v raspi-config >/dev/null; then
    step "screen blanking" "left as is: no raspi-config (not Raspberry Pi OS); turn blanking off in the desktop's settings"
else
    if [ "$(id -u)" = 0 ]; then
        blanking="$(raspi-config nonint get_blanking 2>/dev/null || echo unknown)"
    else
        blanking="$(sudo -n raspi-config nonint get_blanking 2>/dev/null || echo unknown)"
    fi
    compositor=X11
    pgrep -x labwc >/dev/null && compositor=labwc
    pgrep -x wayfire >/dev/null && compositor=wayfire
    if [ "$blanking" = 1 ]; then
        step "screen blanking" "already off ($compositor)"
    elif [ "$dry_run" = 1 ]; then
        would "screen blanking" "turn it off for $compositor: sudo raspi-config nonint do_blanking 1"
    else
        # SUDO_USER tells raspi-config whose ~/.config to edit.
        if [ "$(id -u)" = 0 ]; then SUDO_USER="$user" raspi-config nonint do_blanking 1
        else sudo raspi-config nonint do_blanking 1
        fi
        step "screen blanking" "turned off for $compositor (raspi-config nonint do_blanking 1)"
        changes=$((changes + 1))
    fi
    if [ "$compositor" = X11 ] && grep -qsE '^user-session=.*(labwc|wayfire)' /etc/lightdm/lightdm.conf; then
        echo "  note: the desktop is set to Wayland but not running now; raspi-config changes the" \
             "running desktop's setting, so run this again from the desktop (or over SSH while it runs)."
    fi
fi

# --- Summary -----------------------------------------------------------------------------------
if [ "$dry_run" = 1 ]; then
    if [ "$changes" = 0 ]; then echo "Nothing to do: AutoTrader is installed."
    else echo "Dry run: $changes step(s) would change something; run without --dry-run to do them."
    fi
elif [ "$changes" = 0 ]; then
    echo "Nothing changed: AutoTrader was already installed."
else
    echo "Done ($changes step(s) changed). The kiosk starts with the desktop from the next login;"
    echo "start it now with $here/kiosk.sh (simulated market until Alpaca keys are set in $here/.env)."
fi
