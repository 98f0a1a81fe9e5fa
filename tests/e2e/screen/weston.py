"""A real Wayland compositor for screen tests: a headless weston of a given size, its scene graph, probe launches.

weston stands in for the Pi's labwc/wayfire (not in Debian's archive): the same Qt wayland platform
plugin and xdg-shell protocol, a stacking desktop shell with a panel. Each compositor gets its own
runtime directory (mode 0700) and socket, so it never meets another weston on the machine. It runs
with ``--debug`` so that ``weston-debug scene-graph`` can say where the compositor put each surface,
which a Wayland client cannot ask. ``scripts/ci-system-deps.sh`` installs weston; without it, or
without Qt's wayland plugin, the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.screen.xvfb import REPO

NO_WESTON = "weston is not installed (scripts/ci-system-deps.sh installs it)"
NO_PLUGIN = "Qt's wayland platform plugin (libqwayland.so) is not in this PySide6"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Weston:
    """A running compositor: the environment a client needs to reach it, and its log."""

    runtime_dir: str
    socket: str
    log: Path

    def env(self) -> dict[str, str]:
        """This process's environment pointed at this compositor only (no X display to fall back on)."""
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
        return {**env, "XDG_RUNTIME_DIR": self.runtime_dir, "WAYLAND_DISPLAY": self.socket}


@dataclass(frozen=True)
class View:
    """One surface as the compositor shows it: its layer (0 is the top), what it is, where it is."""

    layer: int
    description: str
    rect: tuple[int, int, int, int]  # x, y, width, height in output coordinates
    opaque: bool


def need_wayland() -> None:
    """Skip the test unless weston, weston-debug and Qt's wayland plugin are all here."""
    if shutil.which("weston") is None or shutil.which("weston-debug") is None:
        pytest.skip(NO_WESTON)
    from PySide6.QtCore import QLibraryInfo

    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    if not list(plugins.glob("libqwayland*.so")):
        pytest.skip(NO_PLUGIN)


@contextmanager
def weston(width: int, height: int) -> Iterator[Weston]:
    """A headless weston with one ``width``×``height`` output, ready for clients."""
    need_wayland()
    # A short path of its own: the socket's path must fit a sockaddr_un (108 bytes); mkdtemp makes it 0700.
    runtime_dir = tempfile.mkdtemp(prefix="autotrader-wl-")
    compositor = Weston(runtime_dir, f"autotrader-test-{os.getpid()}", Path(runtime_dir) / "weston.log")
    server = subprocess.Popen(
        ["weston", "--backend=headless-backend.so", f"--width={width}", f"--height={height}",
         f"--socket={compositor.socket}", "--idle-time=0", "--debug", f"--log={compositor.log}"],
        env=compositor.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_output(compositor, server)
        yield compositor
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(runtime_dir, ignore_errors=True)


def _wait_for_output(compositor: Weston, server: subprocess.Popen) -> None:
    """Until the compositor answers on its socket with its output in the scene graph."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log = compositor.log.read_text(errors="replace") if compositor.log.exists() else ""
            if "headless-backend" in log and "Failed to load module" in log:
                pytest.skip("this weston has no headless backend (headless-backend.so)")
            raise RuntimeError(f"weston exited with {server.returncode}: {log[-2000:]}")
        if Path(compositor.runtime_dir, compositor.socket).exists() and "Output 0" in scene_graph_text(compositor):
            return
        time.sleep(0.1)
    raise RuntimeError(f"weston did not come up within {START_TIMEOUT:.0f} s")


def scene_graph_text(compositor: Weston) -> str:
    """weston's own dump of its outputs, layers and views (the ``scene-graph`` debug scope)."""
    done = subprocess.run(["weston-debug", "scene-graph"], capture_output=True, text=True, env=compositor.env(),
                          timeout=30)
    return done.stdout


_LAYER = re.compile(r"^Layer (\d+) ")
_VIEW = re.compile(r"^\tView \d+ \((.*)\):$")
_POSITION = re.compile(r"^\t\tposition: \((-?\d+), (-?\d+)\) -> \((-?\d+), (-?\d+)\)")
_MODE = re.compile(r"^\tmode: (\d+)x(\d+)@")


def output_mode(text: str) -> tuple[int, int] | None:
    """The first output's mode (width, height) from a scene-graph dump."""
    for line in text.splitlines():
        if match := _MODE.match(line):
            return int(match.group(1)), int(match.group(2))
    return None


def views(text: str) -> list[View]:
    """Every view of a scene-graph dump, top layer first."""
    found: list[View] = []
    layer, description, rect = -1, None, None
    for line in text.splitlines():
        if match := _LAYER.match(line):
            layer = int(match.group(1))
        elif match := _VIEW.match(line):
            description, rect = match.group(1), None
        elif description is not None and (match := _POSITION.match(line)):
            x, y, right, bottom = (int(v) for v in match.groups())
            rect = (x, y, right - x, bottom - y)
        elif description is not None and rect is not None and line.startswith("\t\t["):
            # The opacity line follows the position: "[fully opaque]", "[not opaque]" or "[opaque: ...]".
            found.append(View(layer, description, rect, line.strip() == "[fully opaque]"))
            description = None
    return found


def toplevel_of(text: str, pid: int) -> View | None:
    """The xdg_toplevel view of process ``pid``, if the compositor shows one."""
    for view in views(text):
        if "role xdg_toplevel" in view.description and f"PID {pid}," in view.description:
            return view
    return None


class WaylandProbe:
    """``tests.e2e.screen.kiosk_probe --hold`` on a compositor: the real KioskWindow, kept up while asked."""

    def __init__(self, compositor: Weston, *args: str) -> None:
        env = {**compositor.env(), "QT_QPA_PLATFORM": "wayland"}
        self.process = subprocess.Popen([sys.executable, "-m", "tests.e2e.screen.kiosk_probe", "--hold", *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env, cwd=REPO)

    def report(self) -> dict:
        """The probe's next JSON line (the first comes once the window is exposed and has settled)."""
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            if 'Could not load the Qt platform plugin "wayland"' in stderr:
                pytest.skip(f"{NO_PLUGIN.split(' is ')[0]} does not load here: {stderr.strip()[-300:]}")
            raise AssertionError(f"the probe ended without a report (exit {self.process.wait(timeout=30)}): "
                                 f"{stderr[-2000:]}")
        return json.loads(line)

    def fresh_report(self) -> dict:
        """Ask the probe for its geometry now."""
        assert self.process.stdin is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        return self.report()

    def close(self) -> None:
        """Close stdin (the probe closes its window and exits); kill it if it does not."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def wayland_probe(compositor: Weston, *args: str) -> Iterator[WaylandProbe]:
    """A held probe on ``compositor``, closed on the way out."""
    probe = WaylandProbe(compositor, *args)
    try:
        yield probe
    finally:
        probe.close()


def wait_for_toplevel(compositor: Weston, pid: int, settled, timeout: float = 30.0) -> tuple[View | None, str]:
    """Poll the scene graph until ``pid``'s toplevel satisfies ``settled(view, dump)``; the last view
    and dump. (weston's own start-up fade is a view above every layer for its first moments.)"""
    deadline = time.monotonic() + timeout
    view, text = None, ""
    while time.monotonic() < deadline:
        text = scene_graph_text(compositor)
        view = toplevel_of(text, pid)
        if view is not None and settled(view, text):
            break
        time.sleep(0.2)
    return view, text
