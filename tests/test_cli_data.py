"""``autotrader bars``, ``import-bars``, ``set-pin`` and ``doctor`` as a person runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.marketdata.bar_csv import HEADER
from app.engine.marketdata.calendar import MarketCalendar
from app.storage.market_store import MarketStore
from app.storage.system_store import SystemStore
from app.engine.system.pin import PinGuard
from tests.cli_helpers import run_cli

DAY_MINUTES = MarketCalendar().session_minutes(__import__("datetime").date(2024, 1, 2))


def _csv(rows: list[str]) -> str:
    return ",".join(HEADER) + "\n" + "\n".join(rows) + "\n"


def _good_rows(n: int) -> list[str]:
    from app.storage.timefmt import epoch_text
    rows = []
    for i, ts in enumerate(DAY_MINUTES[:n]):
        base = 100 + i * 0.1
        rows.append(f"{epoch_text(ts)},{base:.2f},{base + 0.5:.2f},{base - 0.5:.2f},{base + 0.2:.2f},{1000 + i}")
    return rows


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def test_import_then_print_bars_round_trip(data_dir: Path, tmp_path: Path):
    csv_file = tmp_path / "nvda.csv"
    csv_file.write_text(_csv(_good_rows(30)))
    done = run_cli(data_dir, "import-bars", "NVDA", str(csv_file))
    assert done.returncode == 0, done.stderr
    assert "imported 30 new bars for NVDA" in done.stdout

    last = run_cli(data_dir, "bars", "NVDA", "--last", "5")
    assert last.returncode == 0, last.stderr
    lines = last.stdout.strip().splitlines()
    assert lines[0] == ",".join(HEADER)
    assert len(lines) == 6
    assert lines[-1].startswith("2024-01-02T14:59:00Z,")  # the 30th minute of the session

    ranged = run_cli(data_dir, "bars", "NVDA", "--start", "2024-01-02", "--end", "2024-01-02")
    assert ranged.returncode == 0
    assert len(ranged.stdout.strip().splitlines()) == 31
    assert ranged.stdout.splitlines()[1].startswith("2024-01-02T14:30:00Z,100.0,100.5,99.5,100.2,1000")


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(data_dir: Path, tmp_path: Path):
    rows = _good_rows(10)
    rows[2] = "2024-01-02T14:32:00Z,abc,1,1,1,5"  # line 4
    rows[5] = "2024-01-02T14:35:30Z,1,1,1,1,5"  # line 7: not a whole minute
    rows.append("2024-01-02T21:30:00Z,1,1,1,1,5")  # line 12: after the close
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(_csv(rows))
    done = run_cli(data_dir, "import-bars", "NVDA", str(csv_file))
    assert done.returncode == 2
    assert "line 4: open 'abc' is not a number" in done.stderr
    assert "line 7: timestamp '2024-01-02T14:35:30Z' is not a whole minute" in done.stderr
    assert "line 12: 2024-01-02T21:30:00Z is outside regular trading hours" in done.stderr
    assert "nothing imported" in done.stderr
    stocks = data_dir / "sim" / "stocks.db"
    if stocks.exists():
        with MarketStore(stocks) as store:
            assert store.bar_count() == 0


def test_missing_header_and_bad_symbol_are_clear(data_dir: Path, tmp_path: Path):
    csv_file = tmp_path / "noheader.csv"
    csv_file.write_text("\n".join(_good_rows(3)) + "\n")
    done = run_cli(data_dir, "import-bars", "NVDA", str(csv_file))
    assert done.returncode == 2
    assert "line 1 must be the header timestamp,open,high,low,close,volume" in done.stderr
    bad = run_cli(data_dir, "bars", "../account", "--last", "3")
    assert bad.returncode == 2
    assert "is not a ticker" in bad.stderr
    assert bad.stdout == ""


def test_set_pin_asks_twice_and_stores_only_a_hash(data_dir: Path):
    done = run_cli(data_dir, "set-pin", stdin="4711\n4711\n")
    assert done.returncode == 0, done.stderr
    with SystemStore(data_dir / "sim" / "system.db") as store:
        guard = PinGuard(store)
        assert guard.verify("4711").ok
        assert not guard.is_default()
        values = [row[1] for row in store.connection.execute("SELECT key, value FROM system_config")]
    assert not any("4711" in value for value in values)

    mismatch = run_cli(data_dir, "set-pin", stdin="1234\n4321\n")
    assert mismatch.returncode == 2 and "differ" in mismatch.stderr
    short = run_cli(data_dir, "set-pin", stdin="12\n12\n")
    assert short.returncode == 2
    trivial = run_cli(data_dir, "set-pin", stdin="1234\n1234\n")
    assert trivial.returncode == 2 and "run of digits" in trivial.stderr and "Traceback" not in trivial.stderr
    with SystemStore(data_dir / "sim" / "system.db") as store:
        assert PinGuard(store).verify("4711").ok  # unchanged by the refused attempts


def test_doctor_reports_versions_mode_and_integrity(data_dir: Path, tmp_path: Path):
    csv_file = tmp_path / "a.csv"
    csv_file.write_text(_csv(_good_rows(2)))
    assert run_cli(data_dir, "import-bars", "AAPL", str(csv_file)).returncode == 0
    done = run_cli(data_dir, "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok] PySide6:" in done.stdout
    assert "SIM (no Alpaca keys configured)" in done.stdout
    assert "[ok] stocks.db: integrity ok" in done.stdout


def test_malformed_setting_is_one_clear_line(data_dir: Path):
    done = run_cli(data_dir, "doctor", ALPACA_FEED="nasdaq")
    assert done.returncode == 2
    assert done.stderr.strip() == "autotrader: ALPACA_FEED must be 'iex' or 'sip' (got 'nasdaq')"
