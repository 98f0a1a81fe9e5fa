#!/usr/bin/env bash
# System packages the screen tests need (tests/e2e/screen/): an X server without a screen, a window
# manager, the X utilities the tests read window geometry with, a Wayland compositor (weston, run
# headless, standing in for the Pi's labwc/wayfire) and the libraries Qt's xcb and wayland platform
# plugins load (a fresh Debian or Raspberry Pi OS Lite lacks some). Idempotent: installs only what is
# missing, and runs `apt-get update` only then. Called by .ci/run.
set -eu
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
column=2
[ "$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")" = trixie ] && column=3
packages=(xvfb openbox x11-utils xdotool fonts-dejavu-core weston)
# Qt's libraries: the one list the app's start-up check and scripts/install-pi.sh read too.
while read -r package; do
    case " ${packages[*]} " in *" $package "*) ;; *) packages+=("$package") ;; esac
done < <(sed 's/#.*//' "$here/resources/qt-system-libraries.txt" | awk -v c="$column" 'NF >= 2 { print (NF >= c ? $c : $2) }')
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "ci-system-deps: all ${#packages[@]} packages present"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "ci-system-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "ci-system-deps: installing ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
