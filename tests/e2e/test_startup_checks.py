"""Clear start-up failures: no display, or Qt's platform plugin missing system libraries (issue 14 item 11)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.commands import qt_platform
from app.commands.qt_platform import check_libraries, parse_ldd
from tests.cli_helpers import cli_env



def _kiosk(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``autotrader run --sim`` with QT_QPA_PLATFORM, DISPLAY and WAYLAND_DISPLAY removed, then ``env``."""
    child_env = cli_env(tmp_path / "data")
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        child_env.pop(name, None)
    child_env.update(env)
    return subprocess.run([sys.executable, "-m", "app", "run", "--sim", "--exit-after", "1", *args],
                          capture_output=True, text=True, env=child_env, cwd=tmp_path, timeout=120)


def test_no_display_is_one_sentence_and_exit_2(tmp_path):
    done = _kiosk(tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "DISPLAY" in lines[0] and "WAYLAND_DISPLAY" in lines[0]
    assert "xcb-cursor0" not in done.stderr  # Qt's misleading abort message never shows
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_display_without_a_server_is_named(tmp_path):
    free = next(n for n in range(150, 250) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    done = _kiosk(tmp_path, DISPLAY=f":{free}")
    assert done.returncode == 2, done.stderr
    assert f"DISPLAY=:{free}" in done.stderr and "no X server" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_wayland_without_a_compositor_is_named(tmp_path):
    done = _kiosk(tmp_path, QT_QPA_PLATFORM="wayland", XDG_RUNTIME_DIR=str(tmp_path))
    assert done.returncode == 2 and "WAYLAND_DISPLAY is not set" in done.stderr
    done = _kiosk(tmp_path, WAYLAND_DISPLAY="wayland-7", XDG_RUNTIME_DIR=str(tmp_path))
    assert done.returncode == 2 and "WAYLAND_DISPLAY=wayland-7" in done.stderr


def test_headless_needs_no_display(tmp_path):
    done = _kiosk(tmp_path, "--headless")
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd (libc-bin) is not installed")
def test_ldd_on_the_real_plugin(tmp_path, monkeypatch):
    """The installed plugin, then a copy of it cut off from the Qt libraries next to it."""
    real = check_libraries("xcb")
    assert real.plugin is not None and real.plugin.name == "libqxcb.so" and real.error is None
    listed = subprocess.run(["ldd", str(real.plugin)], capture_output=True, text=True).stdout
    assert real.missing == parse_ldd(listed)

    alone = tmp_path / "plugins" / "platforms" / "libqxcb.so"
    alone.parent.mkdir(parents=True)
    shutil.copy(real.plugin, alone)
    monkeypatch.setattr(qt_platform, "plugin_path", lambda platform: alone)
    cut = check_libraries("xcb")
    assert "libQt6XcbQpa.so.6" in cut.missing  # its RUNPATH ($ORIGIN/../../lib) finds nothing here
    assert "libqt6xcbqpa6" in cut.install_line
    # The kiosk refuses with that sentence (a Wayland session here, so no X server is needed).
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-test")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "wayland-test").touch()
    monkeypatch.setattr(qt_platform, "plugin_path", lambda platform: alone if platform == "wayland" else None)
    assert "libQt6XcbQpa.so.6" in qt_platform.window_problem(os.environ)


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd (libc-bin) is not installed")
def test_doctor_names_missing_libraries(tmp_path, monkeypatch, capsys):
    from app.cli import main

    real = check_libraries("xcb").plugin
    alone = tmp_path / "platforms" / "libqxcb.so"
    alone.parent.mkdir()
    shutil.copy(real, alone)
    monkeypatch.setattr(qt_platform, "plugin_path", lambda platform: alone)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("AUTOTRADER_DATA_DIR", str(tmp_path / "data"))
    for name in ("ALPACA_API_KEY", "ALPACA_SECRET", "DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main(["doctor", "--sim"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] Qt xcb libraries" in out and "sudo apt install libqt6xcbqpa6" in out
    assert "[--] display: no display" in out  # over SSH that is a note, not a failure
