"""Taps on the real kiosk window (Xvfb, xdotool): HALT stops trading with one tap, no PIN (issue 14 item 6).

``autotrader run --sim`` runs as a child on a bare 800×480 X server; the tap is a real X pointer
event; ``autotrader status --json`` (another process, reading system.db) sees the halt.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from tests.cli_helpers import cli_env
from tests.e2e.screen.xvfb import need, xvfb

WIDTH, HEIGHT = 800, 480
HALT_AT = (683, 37)  # the HALT button's middle at 800×480 (header, right, left of ⚙)


def _status(env: dict, cwd) -> dict:
    done = subprocess.run([sys.executable, "-m", "app", "status", "--json", "--sim"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_one_tap_on_halt_stops_trading(tmp_path):
    xdotool, xwininfo = need("xdotool"), need("xwininfo")
    with xvfb(WIDTH, HEIGHT) as display:
        env = {k: v for k, v in cli_env(tmp_path / "data").items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
        env["DISPLAY"] = display
        xenv = {**os.environ, "DISPLAY": display}
        kiosk = subprocess.Popen([sys.executable, "-m", "app", "run", "--sim", "--exit-after", "90"], env=env,
                                 cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            shown = False
            while not shown and time.monotonic() < deadline and kiosk.poll() is None:
                tree = subprocess.run([xwininfo, "-root", "-tree"], capture_output=True, text=True, env=xenv).stdout
                shown = bool(re.search(rf'"AutoTrader"\)\s+{WIDTH}x{HEIGHT}\+0\+0', tree))
                time.sleep(0.3)
            assert shown and kiosk.poll() is None, kiosk.stderr.read() if kiosk.stderr else ""
            assert _status(env, tmp_path)["halted"] is False
            time.sleep(2)  # the first frame with the engine's account on it
            subprocess.run([xdotool, "mousemove", str(HALT_AT[0]), str(HALT_AT[1]), "click", "1"], env=xenv, check=True)
            halted = False
            deadline = time.monotonic() + 30
            while not halted and time.monotonic() < deadline:
                halted = _status(env, tmp_path)["halted"]
                time.sleep(0.5)
            assert halted, "one tap on HALT did not halt trading"
        finally:
            kiosk.terminate()
            kiosk.wait(timeout=30)
