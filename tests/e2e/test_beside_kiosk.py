"""A real ``autotrader run --sim --speed 600`` process, and what other processes may do beside it.

The kiosk runs headless in its own child process with its own data folder. Its simulated clock is
days ahead of the real one (the folder records a last cycle in next week's sessions, and a sim resumes
after it), which is what an accelerated sim reaches after a few minutes: admin commands that used the
real clock against those bars raised ``StoreError: range start … is after its end``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from app.engine.system.folder_lock import LOCK_FILE, running_engine_pid
from app.engine.system.maintenance import LAST_CYCLE_KEY
from app.engine.marketdata.calendar import MarketCalendar
from app.storage.system_store import SystemStore
from app.storage.timefmt import utc_text
from tests.cli_helpers import cli_env, run_cli

SPEED = "600"


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(data_dir, *args, XDG_CONFIG_HOME=str(data_dir.parent / "config"))


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def future_session_minute() -> tuple[date, object]:
    """Half an hour into a session a week or more from today."""
    calendar = MarketCalendar()
    day = date.today() + timedelta(days=7)
    while not calendar.is_session(day):
        day += timedelta(days=1)
    return day, calendar.session_open(day) + timedelta(minutes=30)


def last_cycle(data_dir: Path) -> dict | None:
    with SystemStore(data_dir / "sim" / "system.db") as store:
        text = store.get_config(LAST_CYCLE_KEY)
    return json.loads(text) if text else None


def start_kiosk(data_dir: Path, *extra: str) -> subprocess.Popen:
    env = cli_env(data_dir, XDG_CONFIG_HOME=str(data_dir.parent / "config"))
    return subprocess.Popen([sys.executable, "-m", "app", "run", "--sim", "--headless", "--speed", SPEED, *extra],
                            env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def kiosk(tmp_path: Path):
    """(process, data folder, the future session day it trades) of a running accelerated sim kiosk."""
    data_dir = tmp_path / "data"
    (data_dir / "sim").mkdir(parents=True)
    day, minute = future_session_minute()
    with SystemStore(data_dir / "sim" / "system.db") as store:
        store.set_config(LAST_CYCLE_KEY, json.dumps({"minute": utc_text(minute)}))
    proc = start_kiosk(data_dir)
    try:
        wait_for(lambda: proc.poll() is not None or (last_cycle(data_dir) or {}).get("wall"), 90,
                 "the kiosk's first cycle")
        assert proc.poll() is None, proc.stderr.read()
        yield proc, data_dir, day
    finally:
        stop(proc)


def test_a_second_kiosk_on_the_folder_exits_2_and_admin_commands_keep_working(kiosk):
    proc, data_dir, _ = kiosk
    assert running_engine_pid(data_dir / "sim") == proc.pid
    second = cli(data_dir, "run", "--sim", "--headless", "--exit-after", "20")
    assert second.returncode == 2
    assert f"AutoTrader is already running on this data folder (pid {proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    assert cli(data_dir, "status", "--sim").returncode == 0
    assert cli(data_dir, "algorithms").returncode == 0

    # The kernel drops the lock of a killed kiosk: the next one starts without any clean-up.
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert running_engine_pid(data_dir / "sim") is None
    assert (data_dir / "sim" / LOCK_FILE).exists()
    again = cli(data_dir, "run", "--sim", "--headless", "--exit-after", "2")
    assert again.returncode == 0, again.stderr


def test_status_add_and_stop_beside_a_running_speed_600_sim(kiosk):
    proc, data_dir, day = kiosk
    before = cli(data_dir, "status", "--sim", "--json")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["clock_behind"] is None

    added = cli(data_dir, "add", "AAPL", "buy_and_hold", "5000", "--sim")
    assert added.returncode == 0, added.stderr
    card_id = int(added.stdout.strip())
    # Named on the engine's clock (its recorded sim time, days ahead), not on the real one.
    with SystemStore(data_dir / "sim" / "system.db") as store:
        assert f"_{day:%Y%m%d}_" in store.get_instance(card_id).display_name
    # The running engine picks the card up and trades it (buy_and_hold buys in its first minute).
    wait_for(lambda: SystemStore(data_dir / "sim" / "system.db").get_transactions(card_id), 60,
             "the kiosk to trade the new card")

    # Failing adds leave nothing written, however often they are retried.
    for _ in range(4):
        refused = cli(data_dir, "add", "MSFT", "buy_and_hold", "1000000", "--sim")
        assert refused.returncode == 2 and "available" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    with SystemStore(data_dir / "sim" / "system.db") as store:
        assert [i.id for i in store.all_instances()] == [card_id]

    listed = json.loads(cli(data_dir, "status", "--sim", "--json").stdout)
    assert [c["id"] for c in listed["instances"]] == [card_id]
    assert listed["instances"][0]["price"] is not None

    stopped = cli(data_dir, "stop", str(card_id), "--sim")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("stopped AAPL_buy_and_hold_")
    after = json.loads(cli(data_dir, "status", "--sim", "--json").stdout)
    assert after["instances"] == []
    assert proc.poll() is None  # the kiosk kept running throughout
