"""MarketStore on real SQLite files, with a real XNYS calendar for the session-minute filter."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

import exchange_calendars as xc
import pytest

from app.storage.market_store import MarketStore, UpsertResult
from app.storage.records import Bar, BarSource
from app.storage.system_store import StoreError

# 2024-07-02 is a full session (13:30-19:59 UTC in summer); 2024-07-03 closes early at 13:00 ET.
JUL2_OPEN = int(datetime(2024, 7, 2, 13, 30, tzinfo=timezone.utc).timestamp())


def bar(ts: int, close: float = 100.0, volume: int = 10) -> Bar:
    """A valid bar around ``close``."""
    return Bar(ts, close - 0.1, close + 0.5, close - 0.5, close, volume)


def minute_bars(start: int, count: int, base: float = 100.0) -> list[Bar]:
    return [bar(start + 60 * i, base + i) for i in range(count)]


@pytest.fixture(scope="module")
def xnys_filter():
    cal = xc.get_calendar("XNYS")
    minutes = cal.minutes_in_range("2024-07-01", "2024-07-08")
    allowed = {int(m.timestamp()) for m in minutes}
    return allowed.__contains__


@pytest.fixture
def store(tmp_path: Path):
    with MarketStore(tmp_path / "stocks.db") as s:
        yield s


def test_upsert_is_idempotent(store: MarketStore) -> None:
    bars = minute_bars(JUL2_OPEN, 50)
    first = store.upsert_bars("AAPL", bars, source=BarSource.ALPACA)
    assert first == UpsertResult(stored=50, rejected=0, rejected_reasons=())
    store.upsert_bars("AAPL", bars, source=BarSource.ALPACA)
    assert store.bar_count("AAPL") == 50
    assert store.bars_between("AAPL", JUL2_OPEN, JUL2_OPEN + 49 * 60) == bars


def test_upsert_overwrites_a_minute_with_corrected_values(store: MarketStore) -> None:
    store.upsert_bars("AAPL", [bar(JUL2_OPEN, 100.0, volume=5)], source=BarSource.ALPACA)
    store.upsert_bars("AAPL", [bar(JUL2_OPEN, 101.0, volume=7)], source=BarSource.ALPACA)
    assert store.bar_count() == 1
    assert store.latest_bar("AAPL") == bar(JUL2_OPEN, 101.0, volume=7)


def test_upsert_accepts_plain_tuples_and_numpy_like_numbers(store: MarketStore) -> None:
    import numpy as np

    result = store.upsert_bars("MSFT", [(np.int64(JUL2_OPEN), np.float64(10), 11.0, 9.0, 10.5,
                                         np.int64(3)), (JUL2_OPEN + 60, 10, 11, 9, 10, 2.0)], source=BarSource.ALPACA)
    assert result.stored == 2
    got = store.last_bars("MSFT", 5, JUL2_OPEN + 120)
    assert got == [Bar(JUL2_OPEN, 10.0, 11.0, 9.0, 10.5, 3), Bar(JUL2_OPEN + 60, 10.0, 11.0, 9.0, 10.0, 2)]
    assert all(type(b.ts) is int and type(b.volume) is int for b in got)


@pytest.mark.parametrize("bad, why", [
    (Bar(JUL2_OPEN + 30, 10, 11, 9, 10, 1), "whole minute"),
    (Bar(JUL2_OPEN, 0, 11, 9, 10, 1), "positive"),
    (Bar(JUL2_OPEN, 10, 11, -9, 10, 1), "positive"),
    (Bar(JUL2_OPEN, 10, 11, 9, float("nan"), 1), "positive"),
    (Bar(JUL2_OPEN, 10, 10.5, 9, 11, 1), "high"),
    (Bar(JUL2_OPEN, 10, 11, 10.5, 10.2, 1), "low"),
    (Bar(JUL2_OPEN, 10, 11, 9, 10, -1), "volume"),
    (Bar(JUL2_OPEN, 10, 11, 9, 10, 1e30), "volume"),
    (Bar(JUL2_OPEN, 10, float("inf"), 9, 10, 1), "positive"),
    ((JUL2_OPEN, 10, 11), "6-field"),
    ("garbage", "6-field"),
])
def test_invalid_bars_are_rejected_with_a_reason(store: MarketStore, bad, why: str) -> None:
    result = store.upsert_bars("AAPL", [bad, bar(JUL2_OPEN + 60)], source=BarSource.ALPACA)
    assert (result.stored, result.rejected) == (1, 1)
    assert why in result.rejected_reasons[0]
    assert store.bar_count("AAPL") == 1


def test_rejected_reasons_are_capped(store: MarketStore) -> None:
    bad = [Bar(JUL2_OPEN + 60 * i, 10, 11, 9, 10, -1) for i in range(25)]
    result = store.upsert_bars("AAPL", bad, source=BarSource.ALPACA)
    assert result.rejected == 25 and result.stored == 0
    assert len(result.rejected_reasons) == 10
    assert store.bar_count() == 0


def test_off_session_minutes_are_rejected_by_the_calendar_filter(tmp_path: Path, xnys_filter) -> None:
    premarket = JUL2_OPEN - 60
    last_minute = JUL2_OPEN + 389 * 60  # 19:59 UTC, the last bar of the session
    after_close = JUL2_OPEN + 390 * 60
    jul3_after_early_close = int(datetime(2024, 7, 3, 17, 0, tzinfo=timezone.utc).timestamp())
    jul4_holiday = int(datetime(2024, 7, 4, 14, 0, tzinfo=timezone.utc).timestamp())
    with MarketStore(tmp_path / "s.db", minute_filter=xnys_filter) as store:
        result = store.upsert_bars("SPY", [bar(t) for t in (
            premarket, JUL2_OPEN, last_minute, after_close, jul3_after_early_close, jul4_holiday)],
            source=BarSource.ALPACA)
        assert (result.stored, result.rejected) == (2, 4)
        assert all("regular-session" in r for r in result.rejected_reasons)
        assert [b.ts for b in store.bars_between("SPY", 0, 2**40)] == [JUL2_OPEN, last_minute]


def test_invalid_symbol_is_refused_and_nothing_written(store: MarketStore) -> None:
    for symbol in ("aapl", "", "../account", "TOOLONGSYMBOL", "A B", 42, "AAPL\n"):
        with pytest.raises(StoreError, match="invalid ticker symbol"):
            store.upsert_bars(symbol, [bar(JUL2_OPEN)], source=BarSource.ALPACA)  # type: ignore[arg-type]
    assert isinstance(StoreError("x"), ValueError)
    assert store.bar_count() == 0
    store.upsert_bars("BRK.B", [bar(JUL2_OPEN)], source=BarSource.ALPACA)
    assert store.symbols() == ["BRK.B"]


def test_last_bars_is_strictly_before_and_chronological(store: MarketStore) -> None:
    store.upsert_bars("AAPL", minute_bars(JUL2_OPEN, 100), source=BarSource.ALPACA)
    store.upsert_bars("MSFT", minute_bars(JUL2_OPEN, 100, base=300.0), source=BarSource.ALPACA)
    cutoff = JUL2_OPEN + 50 * 60
    got = store.last_bars("AAPL", 10, cutoff)
    assert [b.ts for b in got] == [JUL2_OPEN + 60 * i for i in range(40, 50)]
    assert all(b.close < 200 for b in got)  # the other symbol's bars never leak in
    assert store.last_bars("AAPL", 10, cutoff + 1)[-1].ts == cutoff


def test_last_bars_with_n_larger_than_available(store: MarketStore) -> None:
    store.upsert_bars("AAPL", minute_bars(JUL2_OPEN, 5), source=BarSource.ALPACA)
    assert [b.ts for b in store.last_bars("AAPL", 200, 2**40)] == [JUL2_OPEN + 60 * i for i in range(5)]
    assert store.last_bars("AAPL", 200, JUL2_OPEN) == []
    assert store.last_bars("NVDA", 200, 2**40) == []
    assert store.last_bars("AAPL", 0, 2**40) == []
    with pytest.raises(StoreError):
        store.last_bars("AAPL", -1, 2**40)


def test_bars_between_is_a_closed_range(store: MarketStore) -> None:
    store.upsert_bars("AAPL", minute_bars(JUL2_OPEN, 10), source=BarSource.ALPACA)
    got = store.bars_between("AAPL", JUL2_OPEN + 120, JUL2_OPEN + 300)
    assert [b.ts for b in got] == [JUL2_OPEN + 120, JUL2_OPEN + 180, JUL2_OPEN + 240, JUL2_OPEN + 300]
    with pytest.raises(StoreError, match="after its end"):
        store.bars_between("AAPL", JUL2_OPEN + 300, JUL2_OPEN)


def test_latest_bar_and_latest_bars(store: MarketStore) -> None:
    assert store.latest_bar("AAPL") is None
    store.upsert_bars("AAPL", minute_bars(JUL2_OPEN, 3), source=BarSource.ALPACA)
    store.upsert_bars("MSFT", minute_bars(JUL2_OPEN, 7), source=BarSource.ALPACA)
    assert store.latest_bar("AAPL").ts == JUL2_OPEN + 120
    latest = store.latest_bars(["AAPL", "MSFT", "NVDA"])
    assert set(latest) == {"AAPL", "MSFT"}
    assert latest["MSFT"].ts == JUL2_OPEN + 360


def test_symbols_and_counts(store: MarketStore) -> None:
    assert store.symbols() == [] and store.bar_count() == 0
    for symbol, n in (("MSFT", 4), ("AAPL", 2), ("NVDA", 1)):
        store.upsert_bars(symbol, minute_bars(JUL2_OPEN, n), source=BarSource.ALPACA)
    assert store.symbols() == ["AAPL", "MSFT", "NVDA"]
    assert store.bar_count() == 7
    assert store.bar_count("MSFT") == 4
    assert store.bar_count("TSLA") == 0


def test_coverage_and_missing_sessions(store: MarketStore) -> None:
    cal = xc.get_calendar("XNYS")
    sessions = [s.date() for s in cal.sessions_in_range("2024-07-01", "2024-07-12")]
    assert date(2024, 7, 4) not in sessions  # holiday: the calendar, not the store, knows this
    assert store.missing_sessions("AAPL", sessions) == sessions
    store.record_coverage("AAPL", [sessions[0], sessions[2]], source=BarSource.ALPACA)
    store.record_coverage("AAPL", [sessions[2]], source=BarSource.ALPACA)  # recording twice is harmless
    store.record_coverage("MSFT", sessions, source=BarSource.ALPACA)
    assert store.missing_sessions("AAPL", sessions) == [s for i, s in enumerate(sessions) if i not in (0, 2)]
    assert store.covered_sessions("AAPL", date(2024, 7, 1), date(2024, 7, 31)) == {sessions[0], sessions[2]}
    assert store.covered_sessions("AAPL", date(2024, 7, 2), date(2024, 7, 31)) == {sessions[2]}
    assert store.missing_sessions("MSFT", sessions) == []
    assert store.missing_sessions("MSFT", []) == []
    with pytest.raises(StoreError, match="datetime.date"):
        store.record_coverage("AAPL", ["2024-07-01"], source=BarSource.ALPACA)  # type: ignore[list-item]


def test_coverage_accepts_pandas_timestamps(store: MarketStore) -> None:
    cal = xc.get_calendar("XNYS")
    sessions = list(cal.sessions_in_range("2024-07-01", "2024-07-03"))
    store.record_coverage("AAPL", sessions[:1], source=BarSource.ALPACA)
    assert store.missing_sessions("AAPL", sessions) == [s.date() for s in sessions[1:]]


def test_schema_and_migration_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "stocks.db"
    with MarketStore(path) as store:
        store.upsert_bars("AAPL", minute_bars(JUL2_OPEN, 3), source=BarSource.ALPACA)
    with MarketStore(path) as store:
        conn = store.connection
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert store.bar_count() == 3
        assert store.integrity_check() == (True, "ok")
        # Long layout: the table is keyed by (symbol, ts) without a rowid.
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'bars'").fetchone()[0]
        assert "WITHOUT ROWID" in ddl and "PRIMARY KEY (symbol, ts)" in ddl
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO bars VALUES ('AAPL', ?, 1, 1, 1, 1, 1, 1)", (JUL2_OPEN,))


def test_last_bars_plan_uses_the_primary_key(store: MarketStore) -> None:
    plan = store.connection.execute(
        "EXPLAIN QUERY PLAN SELECT ts, open, high, low, close, volume FROM bars "
        "WHERE symbol = ? AND ts < ? ORDER BY ts DESC LIMIT ?", ("AAPL", 0, 200)).fetchall()
    text = " ".join(row[-1] for row in plan)
    assert "USING PRIMARY KEY" in text and "TEMP B-TREE" not in text


def test_a_filter_that_raises_value_error_rejects_the_bar(tmp_path: Path) -> None:
    def calendar_2024_only(ts: int) -> bool:
        if ts >= int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()):
            raise ValueError("outside the market calendar")
        return True

    jan_2025 = int(datetime(2025, 1, 2, 15, 0, tzinfo=timezone.utc).timestamp())
    with MarketStore(tmp_path / "s.db", minute_filter=calendar_2024_only) as store:
        result = store.upsert_bars("SPY", [bar(JUL2_OPEN), bar(jan_2025)], source=BarSource.ALPACA)
        assert (result.stored, result.rejected) == (1, 1)
        assert "outside the market calendar" in result.rejected_reasons[0]


def _epoch(day: date, hh: int = 14, mm: int = 30) -> int:
    return int(datetime(day.year, day.month, day.day, hh, mm, tzinfo=timezone.utc).timestamp())


def test_pruning_deletes_only_old_simulated_bars(store: MarketStore) -> None:
    old, recent = date(2023, 3, 1), date(2024, 6, 3)
    store.upsert_bars("SIMU", minute_bars(_epoch(old), 30) + minute_bars(_epoch(recent), 30),
                      source=BarSource.SIMULATED)
    store.record_coverage("SIMU", [old, recent], source=BarSource.SIMULATED)
    store.upsert_bars("REAL", minute_bars(_epoch(old), 30), source=BarSource.ALPACA)
    store.record_coverage("REAL", [old], source=BarSource.ALPACA)
    store.upsert_bars("FILE", minute_bars(_epoch(old), 30), source=BarSource.IMPORTED)
    store.upsert_bars("OLDS", minute_bars(_epoch(old), 10), source=BarSource.SIMULATED)

    assert store.prune_simulated(_epoch(date(2024, 1, 1), 0, 0)) == 40
    assert [b.ts for b in store.bars_between("SIMU", 0, 2**40)] == [b.ts for b in minute_bars(_epoch(recent), 30)]
    assert store.covered_sessions("SIMU", old, recent) == {recent}
    # Real and imported bars are never pruned, however old.
    assert store.bar_count("REAL") == 30 and store.bar_count("FILE") == 30
    assert store.covered_sessions("REAL", old, old) == {old}
    # A symbol left with no simulated bars no longer counts as having any.
    assert store.bar_count("OLDS") == 0 and store.sources("OLDS") == frozenset()
    assert store.sources("SIMU") == frozenset({BarSource.SIMULATED})
    assert store.prune_simulated(_epoch(date(2024, 1, 1), 0, 0)) == 0  # nothing more to do


def test_pruning_refuses_a_cut_off_that_is_not_epoch_seconds(store: MarketStore) -> None:
    store.upsert_bars("SIMU", minute_bars(_epoch(date(2023, 3, 1)), 5), source=BarSource.SIMULATED)
    with pytest.raises(StoreError, match="epoch seconds"):
        store.prune_simulated("2024-01-01")  # type: ignore[arg-type]
    assert store.bar_count("SIMU") == 5
