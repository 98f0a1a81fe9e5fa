#!/usr/bin/env bash
# System packages the screen tests need (tests/ui/test_screen_xvfb.py): an X server without a screen,
# a window manager, the X utilities the tests read window geometry with, and the libraries Qt's xcb
# platform plugin loads (a fresh Debian or Raspberry Pi OS Lite lacks some). Idempotent: installs
# only what is missing, and runs `apt-get update` only then. Called by .ci/run.
set -eu
packages=(
    xvfb openbox x11-utils xdotool
    libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-randr0
    libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1
    libegl1 libgl1 libfontconfig1 libdbus-1-3 fonts-dejavu-core
)
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
