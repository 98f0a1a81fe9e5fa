"""The autostart entry and the supervisor that brings a dead kiosk back within 10 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli_helpers import cli_env, run_cli


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _wait_for_child(pid: int, not_in: set[int], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [c for c in _children(pid) if c not in not_in]
        if fresh:
            return fresh[0]
        time.sleep(0.1)
    return None


def test_install_autostart_writes_entry_with_this_environment(tmp_path: Path):
    done = run_cli(tmp_path, "install-autostart", "--dir", str(tmp_path / "autostart"))
    assert done.returncode == 0, done.stderr
    entry = (tmp_path / "autostart" / "autotrader.desktop").read_text()
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    executable = exec_line.removeprefix("Exec=").split()[0]
    assert Path(executable).is_absolute() and Path(executable).exists()
    assert exec_line.endswith(" supervise")


def test_supervisor_restarts_a_killed_kiosk(tmp_path: Path):
    sup = subprocess.Popen([sys.executable, "-m", "app", "supervise", "--", "--headless", "--sim"],
                           env=cli_env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        first = _wait_for_child(sup.pid, set(), 30)
        assert first is not None, "supervisor started no kiosk"
        time.sleep(1.0)
        os.kill(first, signal.SIGKILL)
        # The restart delay is the supervisor's (a few seconds); 60 s only bounds a busy machine.
        second = _wait_for_child(sup.pid, {first}, 60)
        assert second is not None, "kiosk not restarted"
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(20)
        except subprocess.TimeoutExpired:
            sup.kill()
    assert sup.returncode == 0
