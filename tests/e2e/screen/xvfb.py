"""Real X servers for screen tests: an Xvfb of a given size (optionally with openbox), and probe launches
(Wayland: ``weston.py``).

The test files install nothing: ``scripts/ci-system-deps.sh`` puts Xvfb, openbox, x11-utils and Qt's
xcb libraries on a CI machine; where Xvfb is absent the screen tests skip and say so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NO_XVFB = "Xvfb is not installed (scripts/ci-system-deps.sh installs it)"


def need(program: str) -> str:
    """The path of ``program``, or skip the test saying which one is missing."""
    path = shutil.which(program)
    if path is None:
        pytest.skip(NO_XVFB if program == "Xvfb" else f"{program} is not installed (scripts/ci-system-deps.sh)")
    return path


@contextmanager
def xvfb(width: int, height: int, *, window_manager: str | None = None) -> Iterator[str]:
    """An Xvfb server of ``width``×``height`` on a display number it picks itself; yields ``":N"``."""
    binary = need("Xvfb")
    read, write = os.pipe()
    server = subprocess.Popen([binary, "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
                               "-nolisten", "tcp", "-noreset"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    wm = None
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()  # written once the server accepts connections
        if not number.isdigit():
            raise RuntimeError(f"Xvfb did not start (exit {server.poll()})")
        display = f":{number}"
        if window_manager:
            wm = subprocess.Popen([need(window_manager)], env={**os.environ, "DISPLAY": display},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _wait_for_wm(display)
        yield display
    finally:
        for process in (wm, server):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


def _wait_for_wm(display: str) -> None:
    """Until a window manager owns the screen (it sets _NET_SUPPORTING_WM_CHECK on the root)."""
    xprop = shutil.which("xprop")
    deadline = time.monotonic() + 20
    while xprop and time.monotonic() < deadline:
        out = subprocess.run([xprop, "-root", "_NET_SUPPORTING_WM_CHECK"], capture_output=True, text=True,
                             env={**os.environ, "DISPLAY": display}).stdout
        if "window id" in out:
            return
        time.sleep(0.1)
    if not xprop:
        time.sleep(1.0)


def probe(display: str, *args: str, timeout: float = 90) -> dict:
    """Launch ``tests.e2e.screen.kiosk_probe`` on ``display`` (the real KioskWindow on the real X server)."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = display
    done = subprocess.run([sys.executable, "-m", "tests.e2e.screen.kiosk_probe", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def x_geometry(display: str, window_id: int) -> tuple[int, int, int, int] | None:
    """The window's absolute geometry as the X server has it (``xwininfo``); None without x11-utils."""
    xwininfo = shutil.which("xwininfo")
    if xwininfo is None:
        return None
    out = subprocess.run([xwininfo, "-id", str(window_id)], capture_output=True, text=True, check=True,
                         env={**os.environ, "DISPLAY": display}).stdout

    def field(name: str) -> int:
        return int(re.search(rf"{name}:\s+(-?\d+)", out).group(1))

    return (field("Absolute upper-left X"), field("Absolute upper-left Y"), field("Width"), field("Height"))
