"""MarketStore.upsert_many: many symbols' bars (and coverage) in ONE write transaction, on real SQLite files."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from app.storage.market_store import MarketStore, UpsertResult
from app.storage.records import Bar, BarSource
from app.storage.system_store import StoreError

OPEN = int(datetime(2024, 7, 2, 13, 30, tzinfo=timezone.utc).timestamp())  # a full summer session
SYMBOLS = ("AAPL", "AMZN", "BRK.B", "GOOG", "META", "MSFT", "NVDA", "SPY", "TSLA", "QQQ")


def bar(ts: int, close: float = 100.0) -> Bar:
    return Bar(ts, close - 0.1, close + 0.5, close - 0.5, close, 10)


class WriteCounter:
    """Counts write transactions on a connection through SQLite's own statement trace."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.statements: list[str] = []
        conn.set_trace_callback(self.statements.append)

    @property
    def begins(self) -> int:
        return sum(1 for s in self.statements if s.lstrip().upper().startswith("BEGIN"))

    @property
    def commits(self) -> int:
        return sum(1 for s in self.statements if s.lstrip().upper().startswith("COMMIT"))


@pytest.fixture
def store(tmp_path: Path):
    with MarketStore(tmp_path / "stocks.db") as s:
        yield s


def test_ten_symbols_one_minute_is_one_transaction(store):
    counter = WriteCounter(store.connection)
    results = store.upsert_many({s: [bar(OPEN, 100 + i)] for i, s in enumerate(SYMBOLS)}, source=BarSource.ALPACA)
    assert (counter.begins, counter.commits) == (1, 1)
    assert results == {s: UpsertResult(1, 0) for s in SYMBOLS}
    assert store.bar_count() == 10
    assert store.latest_bar("QQQ") == bar(OPEN, 109)
    # The per-symbol path it replaces costs one transaction per symbol: the saving is real.
    counter.statements.clear()
    for s in SYMBOLS:
        store.upsert_bars(s, [bar(OPEN + 60)], source=BarSource.ALPACA)
    assert counter.begins == 10


def test_several_minutes_per_symbol_and_idempotent(store):
    batch = {s: [bar(OPEN + 60 * k, 50 + k) for k in range(5)] for s in SYMBOLS[:3]}
    store.upsert_many(batch, source=BarSource.ALPACA)
    store.upsert_many(batch, source=BarSource.ALPACA)  # written twice: same rows
    assert store.bar_count() == 15
    assert store.bars_between("AMZN", OPEN, OPEN + 240) == batch["AMZN"]


def test_bad_bars_are_refused_per_symbol_and_the_rest_is_stored(tmp_path):
    allowed = {OPEN + 60 * k for k in range(390)}
    with MarketStore(tmp_path / "f.db", minute_filter=allowed.__contains__) as store:
        counter = WriteCounter(store.connection)
        results = store.upsert_many({
            "AAPL": [bar(OPEN), Bar(OPEN + 60, 10, 9, 8, 9.5, 1)],  # high below open
            "MSFT": [bar(OPEN - 3600)],  # before the open
            "NVDA": [bar(OPEN + 30)],  # not a whole minute
        }, source=BarSource.ALPACA)
        assert counter.begins == 1
        assert results["AAPL"].stored == 1 and results["AAPL"].rejected == 1
        assert "high 9" in results["AAPL"].rejected_reasons[0]
        assert results["MSFT"] == UpsertResult(0, 1, (results["MSFT"].rejected_reasons[0],))
        assert "not a regular-session minute" in results["MSFT"].rejected_reasons[0]
        assert "not a whole minute" in results["NVDA"].rejected_reasons[0]
        assert store.bar_count() == 1
        # bar_problem gives the same verdict before any write.
        assert store.bar_problem(bar(OPEN)) is None
        assert "not a regular-session minute" in store.bar_problem(bar(OPEN - 3600))
        assert "6-field" in store.bar_problem(("garbage",))


def test_a_bad_ticker_anywhere_writes_nothing(store):
    counter = WriteCounter(store.connection)
    with pytest.raises(StoreError, match="invalid ticker symbol"):
        store.upsert_many({"AAPL": [bar(OPEN)], "../account": [bar(OPEN)]}, source=BarSource.ALPACA)
    with pytest.raises(StoreError, match="invalid ticker symbol"):
        store.upsert_many({"AAPL": [bar(OPEN)]}, coverage={"bad sym": [date(2024, 7, 2)]}, source=BarSource.ALPACA)
    with pytest.raises(StoreError, match="must map ticker symbols"):
        store.upsert_many([("AAPL", [bar(OPEN)])], source=BarSource.ALPACA)  # type: ignore[arg-type]
    assert counter.begins == 0 and store.bar_count() == 0


def test_a_failing_bar_source_rolls_everything_back(store):
    def broken():
        yield bar(OPEN)
        raise OSError("disk went away")

    with pytest.raises(OSError):
        store.upsert_many({"AAPL": [bar(OPEN)], "MSFT": broken()}, source=BarSource.ALPACA)
    assert store.bar_count() == 0


def test_coverage_goes_in_the_same_transaction(store):
    counter = WriteCounter(store.connection)
    day = date(2024, 7, 2)
    store.upsert_many({"AAPL": [bar(OPEN)], "MSFT": [bar(OPEN)]}, coverage={"AAPL": [day], "MSFT": [day]},
                      source=BarSource.ALPACA)
    assert counter.begins == 1
    assert store.missing_sessions("AAPL", [day, date(2024, 7, 3)]) == [date(2024, 7, 3)]
    assert store.covered_sessions("MSFT", day, day) == {day}
    # Coverage alone (a session with no trades) is still one write.
    counter.statements.clear()
    store.upsert_many({}, coverage={"SPY": [day]}, source=BarSource.ALPACA)
    assert counter.begins == 1 and store.covered_sessions("SPY", day, day) == {day}


def test_nothing_to_write_opens_no_transaction(store):
    counter = WriteCounter(store.connection)
    assert store.upsert_many({}, source=BarSource.ALPACA) == {}
    assert store.upsert_many({"AAPL": []}, source=BarSource.ALPACA) == {"AAPL": UpsertResult(0, 0)}
    assert store.upsert_many({"AAPL": [bar(OPEN + 1)]}, source=BarSource.ALPACA)["AAPL"].rejected == 1
    assert counter.begins == 0
