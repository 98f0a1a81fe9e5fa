"""``autotrader import-bars`` on the files people really have, through the real command line."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app import cli
from app.engine.marketdata.calendar import MarketCalendar
from app.storage.market_store import MarketStore
from app.storage.records import BarSource
from app.storage.timefmt import epoch_text
from tests.cli_helpers import KEY_VARS, cli_env

CAL = MarketCalendar()
NEW_YORK = ZoneInfo("America/New_York")
JUN3, JUN4, JUN5 = date(2024, 6, 3), date(2024, 6, 4), date(2024, 6, 5)
ALPACA_HEADER = "symbol,timestamp,open,high,low,close,volume,trade_count,vwap"


@pytest.fixture
def autotrader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run ``autotrader ARGS`` in-process in sim mode; returns (exit code, stdout, stderr)."""
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOTRADER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def stocks(tmp_path: Path) -> Path:
    return tmp_path / "data" / "sim" / "stocks.db"


def dump(tmp_path: Path) -> list[tuple]:
    """Every stored bar with its source, and the coverage table: what must not change."""
    path = stocks(tmp_path)
    if not path.exists():
        return []
    with MarketStore(path) as store:
        conn = store.connection
        return (conn.execute("SELECT * FROM bars ORDER BY symbol, ts").fetchall()
                + conn.execute("SELECT symbol, session, source, complete, first_ts, last_ts FROM coverage "
                               "ORDER BY symbol, session").fetchall())


def alpaca_rows(symbol: str, day: date, count: int | None = None, base: float = 190.0, skip: int = 0) -> list[str]:
    """Rows as alpaca-py's ``BarSet.df.to_csv()`` writes them: +00:00 offsets, float volumes."""
    out = []
    for i, ts in enumerate(CAL.session_minutes(day)[skip:][:count]):
        stamp = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")
        p = base + (i % 7) * 0.05
        out.append(f"{symbol},{stamp},{p:.2f},{p + 0.1:.2f},{p - 0.1:.2f},{p + 0.02:.2f},{6556.0 + i},{40 + i},{p:.4f}")
    return out


def write(tmp_path: Path, name: str, lines: list[str], bom: bool = False) -> str:
    path = tmp_path / name
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# --- accepted -------------------------------------------------------------------------------------


def test_alpaca_py_export_with_bom_float_volumes_and_extra_columns(autotrader, tmp_path: Path) -> None:
    lines = [ALPACA_HEADER, *alpaca_rows("AAPL", JUN3), *alpaca_rows("AAPL", JUN4)]
    code, out, err = autotrader("import-bars", "AAPL", write(tmp_path, "aapl.csv", lines, bom=True))
    assert code == 0, err
    assert out.startswith("imported 780 new bars for AAPL from ")
    assert "780 rows read, 0 already present, 0 duplicate rows (stored once), 0 extended-hours rows dropped" in out
    assert "coverage: 2 complete sessions, 0 partial" in out and "columns not imported: trade_count, vwap" in out
    with MarketStore(stocks(tmp_path)) as store:
        first = store.connection.execute("SELECT * FROM bars ORDER BY ts LIMIT 1").fetchone()
        assert first == ("AAPL", int(CAL.session_open(JUN3).timestamp()), 190.0, 190.1, 189.9, 190.02, 6556,
                         BarSource.IMPORTED)
        assert store.missing_sessions("AAPL", [JUN3, JUN4, JUN5]) == [JUN5]


def test_datetime_headers_with_new_york_offsets_and_any_column_order(autotrader, tmp_path: Path) -> None:
    lines = ["Datetime,Open,High,Low,Close,Adj Close,Volume"]
    for i, ts in enumerate(CAL.session_minutes(JUN3)[:3]):
        local = datetime.fromtimestamp(ts, NEW_YORK).isoformat(sep=" ")  # 2024-06-03 09:30:00-04:00
        lines.append(f"{local},10,11,9,10.5,10.4,{100 + i}")
    code, out, err = autotrader("import-bars", "SPY", write(tmp_path, "yf.csv", lines))
    assert code == 0, err
    code, out, _ = autotrader("bars", "SPY", "--last", "3")
    assert out.splitlines()[1] == "2024-06-03T13:30:00Z,10.0,11.0,9.0,10.5,100"
    date_lines = ["volume,close,low,high,open,Date", "5,10.5,9,11,10,2024-06-03T13:33:00Z"]
    code, _, err = autotrader("import-bars", "SPY", write(tmp_path, "date.csv", date_lines))
    assert code == 0, err


def test_a_multi_symbol_file_imports_every_symbol_or_refuses_a_mismatch(autotrader, tmp_path: Path) -> None:
    lines = [ALPACA_HEADER, *alpaca_rows("AAPL", JUN3, 5), *alpaca_rows("MSFT", JUN3, 4, base=420)]
    path = write(tmp_path, "two.csv", lines)
    code, out, err = autotrader("import-bars", "AAPL", path)
    assert code == 2
    assert f"{path}: line 7: the row is for 'MSFT', not AAPL" in err and "4 bad row(s)" in err
    assert dump(tmp_path) == []
    code, out, err = autotrader("import-bars", path)
    assert code == 0, err
    assert "imported 9 new bars for AAPL, MSFT" in out
    assert "  AAPL: 5 new, 0 already present" in out and "  MSFT: 4 new, 0 already present" in out
    code, _, err = autotrader("import-bars", write(tmp_path, "nosym.csv", ["timestamp,open,high,low,close,volume",
                                                                          "2024-06-03T13:30:00Z,1,1,1,1,1"]))
    assert code == 2 and "the file has no symbol column: name the symbol" in err


def test_identical_duplicates_are_stored_once_and_counted(autotrader, tmp_path: Path) -> None:
    rows = alpaca_rows("AAPL", JUN3, 10)
    lines = [ALPACA_HEADER, *rows, rows[3], rows[3], rows[9]]
    code, out, err = autotrader("import-bars", "AAPL", write(tmp_path, "dups.csv", lines))
    assert code == 0, err
    assert "imported 10 new bars for AAPL" in out and "13 rows read" in out
    assert "3 duplicate rows (stored once)" in out
    again = write(tmp_path, "again.csv", [ALPACA_HEADER, *rows[5:], *alpaca_rows("AAPL", JUN3, 3, skip=10)])
    code, out, err = autotrader("import-bars", "AAPL", again)
    assert code == 0, err
    assert "imported 3 new bars for AAPL" in out and "8 rows read, 5 already present" in out


def test_extended_hours_are_refused_unless_dropped_and_counted(autotrader, tmp_path: Path) -> None:
    open_ts = int(CAL.session_open(JUN3).timestamp())
    pre = f"AAPL,{epoch_text(open_ts - 3600)},1,1,1,1,5,1,1"  # 08:30 New York
    after = f"AAPL,{epoch_text(open_ts + 7 * 3600)},1,1,1,1,5,1,1"  # 16:30 New York
    lines = [ALPACA_HEADER, pre, *alpaca_rows("AAPL", JUN3, 5), after]
    path = write(tmp_path, "ext.csv", lines)
    code, _, err = autotrader("import-bars", "AAPL", path)
    assert code == 2
    assert "line 2: 2024-06-03T12:30:00Z is outside regular trading hours (--regular-hours-only drops such rows)" in err
    assert "line 8: 2024-06-03T20:30:00Z is outside regular trading hours" in err
    assert dump(tmp_path) == []
    code, out, err = autotrader("import-bars", "AAPL", path, "--regular-hours-only")
    assert code == 0, err
    assert "imported 5 new bars for AAPL" in out and "7 rows read" in out and "2 extended-hours rows dropped" in out
    weekend = write(tmp_path, "sat.csv", [ALPACA_HEADER, "AAPL,2024-06-08 14:00:00+00:00,1,1,1,1,5,1,1"])
    code, _, err = autotrader("import-bars", "AAPL", weekend, "--regular-hours-only")
    assert code == 2 and "line 2: 2024-06-08T14:00:00Z is on 2024-06-08 (Saturday), not a trading day" in err


# --- refused, by line, with nothing written --------------------------------------------------------


def test_conflicting_duplicates_are_refused_with_both_lines(autotrader, tmp_path: Path) -> None:
    rows = alpaca_rows("AAPL", JUN3, 4)
    changed = rows[1].replace(",6557.0,", ",7000.0,")
    code, _, err = autotrader("import-bars", "AAPL", write(tmp_path, "conflict.csv", [ALPACA_HEADER, *rows, changed]))
    assert code == 2
    assert "line 6: 2024-06-03T13:31:00Z AAPL is also on line 3 with different values" in err
    assert "nothing imported" in err and dump(tmp_path) == []


def test_rows_outside_the_calendar_are_a_sentence_not_a_traceback(autotrader, tmp_path: Path) -> None:
    lines = [ALPACA_HEADER, *alpaca_rows("AAPL", JUN3, 2), "AAPL,2014-12-31 15:00:00+00:00,1,1,1,1,5,1,1",
             f"AAPL,{CAL.last_day + timedelta(days=30)}T15:00:00Z,1,1,1,1,5,1,1"]
    code, out, err = autotrader("import-bars", "AAPL", write(tmp_path, "range.csv", lines))
    assert code == 2 and out == ""
    assert "line 4: 2014-12-31T15:00:00+00:00 is outside the market calendar (2015-01-01 to" in err
    assert "line 5: " in err and "is outside the market calendar" in err
    assert "Traceback" not in err and "CalendarRangeError" not in err and dump(tmp_path) == []


@pytest.mark.parametrize("row, message", [
    ("AAPL,2024-06-03 13:35:00+00:00,0,1,0,1,5,1,1", "prices must be positive finite numbers"),
    ("AAPL,2024-06-03 13:35:00+00:00,-1,1,-2,1,5,1,1", "prices must be positive finite numbers"),
    ("AAPL,2024-06-03 13:35:00+00:00,nan,1,1,1,5,1,1", "prices must be positive finite numbers"),
    ("AAPL,2024-06-03 13:35:00+00:00,1,inf,1,1,5,1,1", "prices must be positive finite numbers"),
    ("AAPL,2024-06-03 13:35:00+00:00,10,9,11,10,5,1,1", "high 9.0 is below max(open, close, low) 11.0"),
    ("AAPL,2024-06-03 13:35:00+00:00,10,11,9,10,6556.5,1,1", "volume '6556.5' is not a whole number"),
    ("AAPL,2024-06-03 13:35:00,10,11,9,10,5,1,1", "has no UTC offset"),
    ("AAPL,2024-06-03 13:35:30+00:00,10,11,9,10,5,1,1", "is not a whole minute"),
])
def test_bad_values_are_refused_by_line_number(autotrader, tmp_path: Path, row: str, message: str) -> None:
    lines = [ALPACA_HEADER, *alpaca_rows("AAPL", JUN3, 5), row, *alpaca_rows("AAPL", JUN3, 3, skip=6)]
    code, _, err = autotrader("import-bars", "AAPL", write(tmp_path, "bad.csv", lines))
    assert code == 2
    assert "line 7: " in err and message in err, err
    assert "1 bad row(s)" in err and dump(tmp_path) == []


def test_a_refused_file_leaves_an_existing_store_untouched(autotrader, tmp_path: Path) -> None:
    good = write(tmp_path, "good.csv", [ALPACA_HEADER, *alpaca_rows("AAPL", JUN3)])
    assert autotrader("import-bars", "AAPL", good)[0] == 0
    before = dump(tmp_path)
    lines = [ALPACA_HEADER, *alpaca_rows("AAPL", JUN4), *alpaca_rows("AAPL", JUN5)[:-1], "AAPL,garbage,1,1,1,1,1,1,1"]
    code, _, err = autotrader("import-bars", "AAPL", write(tmp_path, "late.csv", lines))
    assert code == 2 and f"line {len(lines)}: timestamp 'garbage' is not an ISO date" in err
    assert dump(tmp_path) == before


# --- coverage -------------------------------------------------------------------------------------


def test_coverage_complete_sessions_partial_edges_and_empty_sessions(autotrader, tmp_path: Path) -> None:
    jun6, jun7 = date(2024, 6, 6), date(2024, 6, 7)
    lines = [ALPACA_HEADER, *alpaca_rows("AAPL", JUN3, skip=120),  # starts at 11:30 New York
             *alpaca_rows("AAPL", JUN4)[::3],  # an IEX-thin session: complete all the same
             *alpaca_rows("AAPL", jun6), *alpaca_rows("AAPL", jun7, 200)]  # no 06-05; ends at 12:49
    code, out, err = autotrader("import-bars", "AAPL", write(tmp_path, "cov.csv", lines))
    assert code == 0, err
    assert "coverage: 2 complete sessions, 2 partial" in out
    assert "1 sessions inside the file's range have no rows and stay missing (2024-06-05)" in out
    with MarketStore(stocks(tmp_path)) as store:
        assert store.missing_sessions("AAPL", [JUN3, JUN4, JUN5, jun6, jun7]) == [JUN3, JUN5, jun7]
        assert store.partial_sessions("AAPL", [JUN3, JUN4, JUN5, jun6, jun7]) == [JUN3, jun7]
        span = store.connection.execute(
            "SELECT first_ts, last_ts FROM coverage WHERE session = '2024-06-07'").fetchone()
        assert span == (int(CAL.session_open(jun7).timestamp()), int(CAL.session_open(jun7).timestamp()) + 199 * 60)


# --- output into a closed pipe ----------------------------------------------------------------------


def test_bars_into_a_pipe_closed_early_ends_quietly(autotrader, tmp_path: Path) -> None:
    days = CAL.sessions_between(date(2024, 5, 1), date(2024, 5, 31))
    lines = [ALPACA_HEADER] + [row for day in days for row in alpaca_rows("AAPL", day)]
    assert autotrader("import-bars", "AAPL", write(tmp_path, "may.csv", lines))[0] == 0
    # A real pipe: read one line then close our end, like `autotrader bars ... | head -1`.
    child = subprocess.Popen([sys.executable, "-m", "app", "bars", "AAPL", "--start", "2024-05-01", "--end",
                              "2024-05-31"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=cli_env(tmp_path / "data"), cwd=tmp_path)
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline() == b"timestamp,open,high,low,close,volume\n"
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0, err
    assert err == ""  # no BrokenPipeError, no "Exception ignored" at exit
