"""``autotrader backfill`` as a real subprocess against the fake Alpaca on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from app.engine.marketdata.calendar import MarketCalendar
from app.storage.market_store import MarketStore
from tests.fakes.alpaca_server import FakeAlpaca

REPO = Path(__file__).resolve().parents[1]
CAL = MarketCalendar()


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "AUTOTRADER_"))}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=env["AUTOTRADER_DATA_DIR"], env=full,
                          capture_output=True, text=True, timeout=120)


def env_for(fake: FakeAlpaca, tmp_path: Path) -> dict[str, str]:
    return {"ALPACA_API_KEY": fake.key, "ALPACA_SECRET": fake.secret, "ALPACA_TRADING_URL": fake.origin,
            "ALPACA_DATA_URL": fake.origin, "AUTOTRADER_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}


def test_backfill_stores_bars_then_reports_them_present(fake_alpaca, tmp_path):
    sessions = CAL.sessions_between(date(2024, 3, 1), date(2024, 3, 28))
    rows = [(ts, 10.0, 10.5, 9.5, 10.25, 100) for s in sessions for ts in CAL.session_minutes(s)]
    fake_alpaca.add_bars("NVDA", rows)
    env = env_for(fake_alpaca, tmp_path)
    done = run(["backfill", "NVDA", "--start", "2024-03-01", "--end", "2024-03-28"], env)
    assert done.returncode == 0, done.stderr
    assert f"{len(sessions)} session(s) fetched, {len(rows)} bars stored, 0 session(s) already present" \
        in done.stdout
    assert f"{len(sessions)}/{len(sessions)} sessions fetched (100%)" in done.stdout  # plain progress lines
    assert fake_alpaca.key not in done.stdout + done.stderr
    with MarketStore(tmp_path / "paper" / "stocks.db") as store:
        assert store.bar_count("NVDA") == len(rows)
    fake_alpaca.clear_log()
    again = run(["backfill", "NVDA", "--start", "2024-03-01", "--end", "2024-03-28"], env)
    assert again.returncode == 0, again.stderr
    assert f"0 session(s) fetched, 0 bars stored, {len(sessions)} session(s) already present" in again.stdout
    assert fake_alpaca.count("/v2/stocks/bars") == 0


@pytest.mark.parametrize("args, message", [
    (["backfill", "nvda", "--start", "2024-03-01", "--end", "2024-03-02"], "is not a ticker"),
    (["backfill", "NVDA", "--start", "2024-03-09", "--end", "2024-03-01"], "before the start date"),
    (["backfill", "NVDA", "--start", "March", "--end", "2024-03-01"], "is not a date YYYY-MM-DD"),
])
def test_bad_input_is_one_clear_line(fake_alpaca, tmp_path, args, message):
    done = run(args, env_for(fake_alpaca, tmp_path))
    assert done.returncode == 2 and message in done.stderr
    assert fake_alpaca.count("/v2/") == 0


def test_sim_mode_says_keys_are_needed(tmp_path):
    done = run(["backfill", "NVDA", "--start", "2024-03-01", "--end", "2024-03-02"],
               {"AUTOTRADER_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)})
    assert done.returncode == 2
    assert ("backfill needs Alpaca keys (ALPACA_API_KEY/ALPACA_SECRET); the simulated market makes its own bars"
            in done.stderr)
    assert not (tmp_path / "sim").exists()


def test_progress_bar_on_a_terminal_and_lines_otherwise():
    import io

    from app.commands.backfill import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, plain = Tty(), io.StringIO()
    for out in (tty, plain):
        progress = Progress(out, "AAPL")
        for done in range(0, 41):
            progress(done, 40)
    assert "\rAAPL [###############---------------] 20/40 sessions" in tty.getvalue()
    assert tty.getvalue().endswith("40/40 sessions\n")
    lines = plain.getvalue().splitlines()
    assert 2 <= len(lines) <= 12 and lines[-1] == "AAPL: 40/40 sessions fetched (100%)"
