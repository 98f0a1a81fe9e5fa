"""Bar provenance in stocks.db on real files: sources, the never-mix rules, staged imports, migration."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from app.storage.market_store import _SCHEMA_V1, MarketStore, SessionSpan
from app.storage.records import Bar, BarSource

JUL2 = date(2024, 7, 2)
JUL2_OPEN = int(datetime(2024, 7, 2, 13, 30, tzinfo=timezone.utc).timestamp())
JUL5 = date(2024, 7, 5)


def bars(start: int, count: int, close: float = 100.0) -> list[Bar]:
    return [Bar(start + 60 * i, close, close + 0.5, close - 0.5, close, 10 + i) for i in range(count)]


def rows(store: MarketStore, symbol: str) -> list[tuple]:
    """Every stored column of the symbol's bars, source included."""
    return store.connection.execute(
        "SELECT ts, open, high, low, close, volume, source FROM bars WHERE symbol = ? ORDER BY ts",
        (symbol,)).fetchall()


@pytest.fixture
def store(tmp_path: Path):
    with MarketStore(tmp_path / "stocks.db") as s:
        yield s


def stage(store: MarketStore, items: list[tuple[int, str, Bar]], spans: dict | None = None):
    imp = store.begin_import()
    problems = imp.add(items)
    assert problems == []
    return imp.commit(spans or {}), imp


# --- the never-mix rules --------------------------------------------------------------------------


def test_each_bar_keeps_its_source(store: MarketStore) -> None:
    store.upsert_bars("AAPL", bars(JUL2_OPEN, 2), source=BarSource.ALPACA)
    store.upsert_bars("SIMX", bars(JUL2_OPEN, 1), source=BarSource.SIMULATED)
    assert {r[6] for r in rows(store, "AAPL")} == {BarSource.ALPACA}
    assert store.sources("AAPL") == {BarSource.ALPACA} and store.sources("SIMX") == {BarSource.SIMULATED}
    assert store.sources("NONE") == frozenset()
    assert store.source_counts("AAPL", JUL2_OPEN, JUL2_OPEN + 3600) == {BarSource.ALPACA: 2}


def test_source_counts_count_each_source_of_the_range_only(store: MarketStore) -> None:
    store.upsert_bars("AAPL", bars(JUL2_OPEN, 5), source=BarSource.ALPACA)
    # One source: the range's rows alone are counted, the bars outside it are not.
    assert store.source_counts("AAPL", JUL2_OPEN + 60, JUL2_OPEN + 180) == {BarSource.ALPACA: 3}
    assert store.source_counts("AAPL", JUL2_OPEN + 600, JUL2_OPEN + 900) == {}
    stage(store, [(2, "AAPL", b) for b in bars(JUL2_OPEN + 300, 2)])  # imported minutes after them
    assert store.sources("AAPL") == {BarSource.ALPACA, BarSource.IMPORTED}
    assert store.source_counts("AAPL", JUL2_OPEN + 180, JUL2_OPEN + 3600) == \
        {BarSource.ALPACA: 2, BarSource.IMPORTED: 2}
    assert store.source_counts("NONE", JUL2_OPEN, JUL2_OPEN + 3600) == {}


def test_synthetic_bars_are_refused_for_a_symbol_with_real_bars_and_get_no_coverage(store: MarketStore) -> None:
    stage(store, [(2, "AAPL", b) for b in bars(JUL2_OPEN, 3, close=3092.91)])
    before = rows(store, "AAPL")
    result = store.upsert_many({"AAPL": bars(JUL2_OPEN, 390, close=16.67)}, source=BarSource.SIMULATED,
                               coverage={"AAPL": [JUL2]})
    assert result["AAPL"].stored == 0 and "never stored beside them" in (result["AAPL"].blocked or "")
    assert rows(store, "AAPL") == before  # byte for byte: 3092.91, imported
    assert store.missing_sessions("AAPL", [JUL2]) == [JUL2]
    store.record_coverage("AAPL", [JUL5], source=BarSource.SIMULATED)
    assert store.missing_sessions("AAPL", [JUL5]) == [JUL5]


def test_unknown_source_bars_are_protected_like_real_ones(tmp_path: Path) -> None:
    path = tmp_path / "stocks.db"
    conn = sqlite3.connect(path)  # a schema-1 file, as AutoTrader wrote them before provenance
    for statement in _SCHEMA_V1:
        conn.execute(statement)
    conn.executemany("INSERT INTO bars VALUES ('SPX', ?, ?, ?, ?, ?, ?)", [tuple(b) for b in bars(JUL2_OPEN, 5)])
    conn.execute("INSERT INTO coverage VALUES ('SPX', '2024-07-02', '2024-07-03T00:00:00Z')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with MarketStore(path) as store:
        assert store.connection.execute("PRAGMA user_version").fetchone()[0] == 2
        assert store.sources("SPX") == {BarSource.UNKNOWN}
        assert {r[6] for r in rows(store, "SPX")} == {BarSource.UNKNOWN}
        assert store.missing_sessions("SPX", [JUL2]) == []  # old coverage still counts as complete
        blocked = store.upsert_bars("SPX", bars(JUL2_OPEN, 5, close=16.67), source=BarSource.SIMULATED)
        assert blocked.blocked and blocked.stored == 0
        fetched = store.upsert_bars("SPX", bars(JUL2_OPEN, 6, close=50.0), source=BarSource.ALPACA)
        assert (fetched.stored, fetched.kept) == (1, 5)  # only the new minute; the old five stay
        assert [r[4] for r in rows(store, "SPX")] == [100.0] * 5 + [50.0]


def test_real_bars_replace_a_symbols_synthetic_bars_and_their_coverage(store: MarketStore) -> None:
    store.upsert_many({"MSFT": bars(JUL2_OPEN, 390, close=16.67)}, source=BarSource.SIMULATED,
                      coverage={"MSFT": [JUL2]})
    store.upsert_bars("MSFT", bars(JUL2_OPEN + 86_400 * 3, 2, close=10.0), source=BarSource.SIMULATED)
    assert store.missing_sessions("MSFT", [JUL2]) == []
    counts, _ = stage(store, [(2, "MSFT", bars(JUL2_OPEN, 1, close=400.0)[0])])
    assert counts["MSFT"].replaced_synthetic == 392 and counts["MSFT"].new == 1
    assert rows(store, "MSFT") == [(JUL2_OPEN, 400.0, 400.5, 399.5, 400.0, 10, BarSource.IMPORTED)]
    assert store.sources("MSFT") == {BarSource.IMPORTED}
    assert store.missing_sessions("MSFT", [JUL2]) == [JUL2]  # the synthetic session's coverage is gone


def test_a_fetch_never_rewrites_an_imported_minute_but_corrects_its_own(store: MarketStore) -> None:
    stage(store, [(2, "AAPL", b) for b in bars(JUL2_OPEN, 2, close=200.0)])
    result = store.upsert_bars("AAPL", bars(JUL2_OPEN, 3, close=201.0), source=BarSource.ALPACA)
    assert (result.stored, result.kept) == (1, 2)
    late = store.upsert_bars("AAPL", [bars(JUL2_OPEN + 120, 1, close=202.0)[0]], source=BarSource.ALPACA)
    assert late.stored == 1
    assert [(r[4], r[6]) for r in rows(store, "AAPL")] == [
        (200.0, BarSource.IMPORTED), (200.0, BarSource.IMPORTED), (202.0, BarSource.ALPACA)]
    assert store.sources("AAPL") == {BarSource.IMPORTED, BarSource.ALPACA}


def test_a_write_needs_a_known_source(store: MarketStore) -> None:
    with pytest.raises(TypeError):
        store.upsert_bars("AAPL", bars(JUL2_OPEN, 1))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown bar source 9"):
        store.upsert_bars("AAPL", bars(JUL2_OPEN, 1), source=9)  # type: ignore[arg-type]
    assert store.bar_count() == 0


# --- staged imports -------------------------------------------------------------------------------


def test_an_import_counts_new_present_and_differing_and_keeps_what_is_stored(store: MarketStore) -> None:
    store.upsert_bars("AAPL", bars(JUL2_OPEN, 2, close=100.0), source=BarSource.ALPACA)
    items = [(2, "AAPL", bars(JUL2_OPEN, 1, close=100.0)[0]),  # same as stored
             (3, "AAPL", bars(JUL2_OPEN + 60, 1, close=99.0)[0]._replace(volume=11)),  # differs
             (4, "AAPL", bars(JUL2_OPEN + 120, 1)[0]), (5, "MSFT", bars(JUL2_OPEN, 1)[0])]
    counts, imp = stage(store, items)
    aapl = counts["AAPL"]
    assert (aapl.rows, aapl.new, aapl.present, aapl.differing) == (3, 1, 2, 1)
    assert (counts["MSFT"].rows, counts["MSFT"].new) == (1, 1)
    assert [r[4] for r in rows(store, "AAPL")] == [100.0, 100.0, 100.0]  # the stored minute kept its 100.0
    assert store.connection.execute(
        "SELECT name FROM sqlite_temp_master WHERE name = 'import_rows'").fetchone() is None


def test_identical_duplicates_are_counted_and_conflicting_ones_named_by_both_lines(store: MarketStore) -> None:
    first = bars(JUL2_OPEN, 1)[0]
    imp = store.begin_import()
    assert imp.add([(2, "AAPL", first), (3, "AAPL", first)]) == []
    assert imp.add([(4, "AAPL", first)]) == []
    problems = imp.add([(5, "AAPL", first._replace(close=100.25, high=101.0))])
    assert imp.duplicates == 2
    assert problems == ["line 5: 2024-07-02T13:30:00Z AAPL is also on line 2 with different values"]
    imp.close()
    assert store.bar_count() == 0


def test_rows_the_store_refuses_are_problems_of_their_line(store: MarketStore) -> None:
    imp = store.begin_import()
    problems = imp.add([(7, "AAPL", Bar(JUL2_OPEN, 10.0, 9.0, 9.5, 9.6, 1)),  # high < low
                        (8, "AAPL", Bar(JUL2_OPEN + 60, float("nan"), 11.0, 9.0, 10.0, 1)),
                        (9, "AAPL", Bar(JUL2_OPEN + 120, 10.0, 11.0, 0.0, 10.0, 1)),
                        (10, "AAPL", Bar(JUL2_OPEN + 180, 10.0, 11.0, 9.0, 10.0, -5))])
    imp.close()
    assert [p.split(":")[0] for p in problems] == ["line 7", "line 8", "line 9", "line 10"]
    assert "high 9.0 is below" in problems[0] and "positive finite" in problems[1]
    assert "positive finite" in problems[2] and "volume -5" in problems[3]
    assert store.bar_count() == 0


def test_import_coverage_complete_and_partial_spans_merge(store: MarketStore) -> None:
    first = bars(JUL2_OPEN, 1)[0]
    stage(store, [(2, "AAPL", first)], {"AAPL": [SessionSpan(JUL2, False, JUL2_OPEN, JUL2_OPEN + 600)]})
    assert store.missing_sessions("AAPL", [JUL2]) == [JUL2]
    assert store.partial_sessions("AAPL", [JUL2]) == [JUL2]
    stage(store, [(2, "AAPL", first._replace(ts=JUL2_OPEN + 6000))],
          {"AAPL": [SessionSpan(JUL2, False, JUL2_OPEN + 3000, JUL2_OPEN + 6000)]})
    span = store.connection.execute("SELECT complete, first_ts, last_ts, source FROM coverage").fetchone()
    assert span == (0, JUL2_OPEN, JUL2_OPEN + 6000, BarSource.IMPORTED)
    stage(store, [(2, "AAPL", first._replace(ts=JUL2_OPEN + 60))], {"AAPL": [SessionSpan(JUL2, True, 0, 0)]})
    assert store.missing_sessions("AAPL", [JUL2]) == [] and store.partial_sessions("AAPL", [JUL2]) == []
    stage(store, [(2, "AAPL", first._replace(ts=JUL2_OPEN + 120))],
          {"AAPL": [SessionSpan(JUL2, False, JUL2_OPEN, JUL2_OPEN + 120)]})
    assert store.missing_sessions("AAPL", [JUL2]) == []  # a complete session stays complete
