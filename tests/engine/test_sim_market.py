"""SimMarket: deterministic synthetic bars, written into a real MarketStore with a real XNYS calendar."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.brokers.protocol import InvalidSymbol
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.sim.market import SimMarket, SymbolBar
from app.storage.market_store import MarketStore
from tests.engine.time_helpers import ep, utc




@pytest.fixture
def store(tmp_path: Path, cal: MarketCalendar):
    with MarketStore(tmp_path / "stocks.db", minute_filter=cal.is_session_minute) as s:
        yield s


@pytest.fixture
def market(cal: MarketCalendar, store: MarketStore) -> SimMarket:
    return SimMarket(cal, store, seed=7)


# -- session_bars ---------------------------------------------------------------------------

def test_same_symbol_and_day_give_identical_bars_across_objects(cal: MarketCalendar, tmp_path: Path) -> None:
    with MarketStore(tmp_path / "a.db") as sa, MarketStore(tmp_path / "b.db") as sb:
        first = SimMarket(cal, sa, seed=3).session_bars("AAPL", date(2024, 6, 4))
        # A second object that has warmed its cache on other symbols and days first.
        other = SimMarket(cal, sb, seed=3)
        other.session_bars("MSFT", date(2023, 1, 3))
        other.session_bars("AAPL", date(2020, 3, 16))
        assert other.session_bars("AAPL", date(2024, 6, 4)) == first


def test_symbols_and_seeds_differ(cal: MarketCalendar, market: SimMarket, store: MarketStore) -> None:
    day = date(2024, 6, 4)
    aapl = market.session_bars("AAPL", day)
    assert market.session_bars("MSFT", day) != aapl
    assert SimMarket(cal, store, seed=8).session_bars("AAPL", day) != aapl
    assert market.session_bars("AAPL", date(2024, 6, 5)) != aapl


def test_bar_minutes_follow_the_calendar(cal: MarketCalendar, market: SimMarket) -> None:
    full = market.session_bars("SPY", date(2024, 6, 4))
    early = market.session_bars("SPY", date(2024, 11, 29))
    assert [b.ts for b in full] == cal.session_minutes(date(2024, 6, 4))
    assert len(full) == 390
    assert full[0].ts == ep(2024, 6, 4, 13, 30)
    assert len(early) == 210
    assert early[-1].ts == ep(2024, 11, 29, 17, 59)  # 12:59 ET: the early close is 13:00 ET


def test_ohlc_invariants_over_many_bars(market: SimMarket) -> None:
    days = [date(2015, 1, 2), date(2018, 2, 5), date(2020, 3, 16), date(2024, 11, 27),
            date(2024, 11, 29), date(2025, 6, 2)]
    symbols = ["AAPL", "MSFT", "NVDA", "TSLA", "F", "BRK.B"]
    count = 0
    for symbol in symbols:
        for day in days:
            bars = market.session_bars(symbol, day)
            assert len(bars) == (210 if day == date(2024, 11, 29) else 390)
            for b in bars:
                assert 0 < b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
                assert isinstance(b.volume, int) and b.volume >= 1
                assert isinstance(b.ts, int) and b.ts % 60 == 0
                assert round(b.close, 2) == b.close  # prices in cents, like a real tape
            count += len(bars)
    assert count >= 10_000


def test_profiles_stay_in_their_ranges(market: SimMarket) -> None:
    for symbol in ["A", "AA", "ZZZZZ", "ZQX", "BRK.A", "QQQX", "IBMQ", "TT", "XOMZ"]:
        prof = market.profile(symbol)
        assert 20 <= prof.start_price <= 500
        assert 0.15 <= prof.volatility <= 0.60
        assert market.session_bars(symbol, date(2015, 1, 2))[0].open == round(prof.start_price, 2)


def test_well_known_tickers_trade_near_their_level_and_others_as_before(market: SimMarket) -> None:
    from app.engine.sim.levels import LEVELS, REFERENCE_SESSION
    for symbol in ["AAPL", "MSFT", "NVDA", "SPY", "TSLA", "KO"]:
        level = LEVELS[symbol][0]
        for day in (REFERENCE_SESSION, date(2026, 11, 30)):
            price = market.session_bars(symbol, day)[-1].close
            # A random walk around the level, not a hashed price: AAPL was simulated at $24.
            assert level / 2 < price < level * 2, (symbol, day, price)
    # Unknown tickers keep their hashed start price ($20-$500) on the anchor session.
    prof = market.profile("ZQX")
    assert 20 <= prof.start_price <= 500
    assert market.session_bars("ZQX", date(2015, 1, 2))[0].open == round(prof.start_price, 2)


def test_next_session_opens_near_previous_close(cal: MarketCalendar, market: SimMarket) -> None:
    sessions = cal.sessions_between(date(2024, 11, 20), date(2024, 12, 10))
    for symbol in ["AAPL", "NVDA", "TSLA", "KO"]:
        previous = market.session_bars(symbol, sessions[0])
        for day in sessions[1:]:
            bars = market.session_bars(symbol, day)
            assert abs(bars[0].open / previous[-1].close - 1) < 0.04, (symbol, day)
            previous = bars


def test_volume_is_u_shaped(cal: MarketCalendar, market: SimMarket) -> None:
    opening = middle = closing = 0
    for day in cal.sessions_between(date(2024, 6, 3), date(2024, 6, 28)):
        volumes = [b.volume for b in market.session_bars("AAPL", day)]
        opening += sum(volumes[:30])
        middle += sum(volumes[180:210])
        closing += sum(volumes[-30:])
    assert opening > 2 * middle
    assert closing > 1.5 * middle


def test_prices_stay_plausible_over_ten_years(cal: MarketCalendar, market: SimMarket) -> None:
    for symbol in ["AAPL", "MEME", "VOL", "Z"]:
        closes = [market.session_bars(symbol, day)[-1].close
                  for day in cal.sessions_between(date(2015, 1, 2), date(2025, 1, 2))[::60]]
        assert min(closes) > 1 and max(closes) < 5000


def test_bad_symbol_and_non_session_day_are_refused(market: SimMarket) -> None:
    with pytest.raises(InvalidSymbol):
        market.session_bars("../account", date(2024, 6, 4))
    with pytest.raises(ValueError, match="not a trading session"):
        market.session_bars("AAPL", date(2024, 6, 8))  # a Saturday


def test_one_session_is_generated_in_under_5_ms(market: SimMarket) -> None:
    market.session_bars("PERF", date(2024, 6, 3))  # builds the symbol's daily path once
    start = time.perf_counter()
    for _ in range(50):
        market.session_bars("PERF", date(2024, 6, 4))
    assert (time.perf_counter() - start) / 50 < 0.005


# -- ensure_history ---------------------------------------------------------------------------

def test_ensure_history_writes_missing_sessions_and_records_coverage(
        market: SimMarket, store: MarketStore) -> None:
    # Tuesday 2024-12-03 mid-session: the complete sessions before it include the early close.
    before = utc(2024, 12, 3, 15, 0)
    wanted = [date(2024, 11, 25), date(2024, 11, 26), date(2024, 11, 27), date(2024, 11, 29),
              date(2024, 12, 2)]
    assert market.complete_sessions_before(before, 5) == wanted
    written = market.ensure_history("AAPL", 5, before=before)
    assert written == 4 * 390 + 210 == store.bar_count("AAPL")
    assert store.covered_sessions("AAPL", date(2024, 11, 1), date(2024, 12, 31)) == set(wanted)
    assert store.bars_between("AAPL", ep(2024, 11, 29, 0, 0), ep(2024, 11, 30, 0, 0)) \
        == market.session_bars("AAPL", date(2024, 11, 29))
    assert market.ensure_history("AAPL", 5, before=before) == 0
    # One more session asked for: only that one is written.
    assert market.ensure_history("AAPL", 6, before=before) == 390
    assert store.bar_count("AAPL") == 5 * 390 + 210


def test_ensure_history_counts_a_session_once_it_has_closed(market: SimMarket, store: MarketStore) -> None:
    assert market.complete_sessions_before(utc(2024, 12, 3, 20, 59, 59), 1) == [date(2024, 12, 2)]
    assert market.complete_sessions_before(utc(2024, 12, 3, 21, 0), 1) == [date(2024, 12, 3)]
    assert market.complete_sessions_before(utc(2024, 12, 7, 12, 0), 2) == [date(2024, 12, 5),
                                                                           date(2024, 12, 6)]
    assert market.ensure_history("MSFT", 1, before=utc(2024, 12, 3, 21, 0)) == 390


# -- publish_until ----------------------------------------------------------------------------

def test_publish_until_returns_only_completed_minutes_once(market: SimMarket, store: MarketStore) -> None:
    day = date(2024, 6, 4)
    open_ts = ep(2024, 6, 4, 13, 30)
    expected = {s: market.session_bars(s, day) for s in ("AAPL", "MSFT")}

    assert market.publish_until(["AAPL", "MSFT"], utc(2024, 6, 4, 13, 30, 59)) == []
    first = market.publish_until(["AAPL", "MSFT"], utc(2024, 6, 4, 13, 33, 2))
    assert [(sb.symbol, sb.bar.ts) for sb in first] == [
        ("AAPL", open_ts), ("MSFT", open_ts), ("AAPL", open_ts + 60), ("MSFT", open_ts + 60),
        ("AAPL", open_ts + 120), ("MSFT", open_ts + 120)]
    assert first[0] == SymbolBar("AAPL", expected["AAPL"][0])
    assert market.publish_until(["AAPL", "MSFT"], utc(2024, 6, 4, 13, 33, 50)) == []
    second = market.publish_until(["AAPL", "MSFT"], utc(2024, 6, 4, 13, 34, 0))
    assert [(sb.symbol, sb.bar) for sb in second] == [("AAPL", expected["AAPL"][3]),
                                                      ("MSFT", expected["MSFT"][3])]
    assert store.bars_between("AAPL", open_ts, open_ts + 3600) == expected["AAPL"][:4]


def test_publish_until_catches_up_and_a_new_object_does_not_republish(
        cal: MarketCalendar, market: SimMarket, store: MarketStore) -> None:
    day = date(2024, 6, 4)
    market.publish_until(["AAPL"], utc(2024, 6, 4, 13, 40))
    # A restarted engine (new SimMarket, same store) resumes after what is stored.
    restarted = SimMarket(cal, store, seed=7)
    resumed = restarted.publish_until(["AAPL", "NEW"], utc(2024, 6, 4, 13, 45))
    aapl = [sb.bar.ts for sb in resumed if sb.symbol == "AAPL"]
    new = [sb.bar.ts for sb in resumed if sb.symbol == "NEW"]
    assert aapl == [ep(2024, 6, 4, 13, m) for m in range(40, 45)]
    assert new == [ep(2024, 6, 4, 13, m) for m in range(30, 45)]
    assert [sb.bar.ts for sb in resumed] == sorted(sb.bar.ts for sb in resumed)
    # After the close, the rest of the session arrives, and the session counts as covered.
    rest = restarted.publish_until(["AAPL"], utc(2024, 6, 4, 23, 0))
    assert len(rest) == 390 - 15
    assert store.bar_count("AAPL") == 390
    assert store.bars_between("AAPL", ep(2024, 6, 4, 0, 0), ep(2024, 6, 5, 0, 0)) \
        == restarted.session_bars("AAPL", day)
    assert store.covered_sessions("AAPL", day, day) == {day}
    assert restarted.publish_until(["AAPL"], utc(2024, 6, 4, 23, 30)) == []


def test_publish_until_outside_a_session_publishes_nothing(market: SimMarket, store: MarketStore) -> None:
    assert market.publish_until(["AAPL"], utc(2024, 6, 4, 13, 29)) == []  # before the open
    assert market.publish_until(["AAPL"], utc(2024, 6, 8, 15, 0)) == []  # Saturday
    assert market.publish_until(["AAPL"], utc(2024, 7, 4, 15, 0)) == []  # Independence Day
    assert store.bar_count() == 0


def test_publish_until_is_cheap_once_caught_up(market: SimMarket) -> None:
    symbols = [f"S{chr(65 + i)}" for i in range(20)]
    now = utc(2024, 6, 4, 15, 0, 2)
    market.publish_until(symbols, now)
    start = time.perf_counter()
    for _ in range(100):
        assert market.publish_until(symbols, now) == []
    assert (time.perf_counter() - start) / 100 < 0.002
    minute = market.publish_until(symbols, now + timedelta(minutes=1))
    assert len(minute) == 20 and {sb.bar.ts for sb in minute} == {ep(2024, 6, 4, 15, 0)}


def test_times_in_other_zones_and_before_the_anchor(market: SimMarket) -> None:
    new_york = timezone(timedelta(hours=-4))
    # 16:30 New York on Jun 4 is 20:30 UTC: Jun 4 has closed.
    assert market.complete_sessions_before(datetime(2024, 6, 4, 16, 30, tzinfo=new_york), 1) \
        == [date(2024, 6, 4)]
    assert market.complete_sessions_before(utc(2015, 1, 6, 12, 0), 5) == [date(2015, 1, 2),
                                                                          date(2015, 1, 5)]
    assert market.complete_sessions_before(utc(2010, 1, 1), 5) == []
    published = market.publish_until(["AAPL"], datetime(2024, 6, 4, 9, 32, tzinfo=new_york))
    assert [sb.bar.ts for sb in published] == [ep(2024, 6, 4, 13, 30), ep(2024, 6, 4, 13, 31)]


# -- never beside real bars ---------------------------------------------------------------------

def _real_bars(day_open: int, n: int) -> list:
    from app.storage.records import Bar
    return [Bar(day_open + 60 * i, 3092.91, 3093.5, 3092.0, 3092.91, 1000 + i) for i in range(n)]


def _all_rows(store: MarketStore, symbol: str) -> list[tuple]:
    return store.connection.execute("SELECT * FROM bars WHERE symbol = ? ORDER BY ts", (symbol,)).fetchall()


def test_a_symbol_with_real_bars_gets_no_synthetic_bars_in_any_session(market: SimMarket, store: MarketStore) -> None:
    from app.storage.records import BarSource
    store.upsert_bars("SPX", _real_bars(ep(2024, 6, 4, 13, 30), 30), source=BarSource.IMPORTED)
    before = _all_rows(store, "SPX")
    assert market.has_real_bars("SPX") and not market.has_real_bars("MSFT")
    assert market.ensure_history("SPX", 5, before=utc(2024, 6, 5, 15, 0)) == 0  # warm-up included
    out = market.publish_until(["SPX", "MSFT"], utc(2024, 6, 5, 14, 0))
    assert {sb.symbol for sb in out} == {"MSFT"} and len(out) == 30
    assert market.publish_until(["SPX", "MSFT"], utc(2024, 6, 5, 23, 0))  # the rest of MSFT's session
    assert _all_rows(store, "SPX") == before
    assert store.missing_sessions("SPX", [date(2024, 6, 5)]) == [date(2024, 6, 5)]


def test_an_import_during_a_session_stops_the_symbols_synthetic_bars(market: SimMarket, store: MarketStore) -> None:
    from app.storage.records import BarSource
    assert len(market.publish_until(["SPX"], utc(2024, 6, 4, 13, 40))) == 10
    imp = store.begin_import()  # another process imports real bars for it meanwhile
    assert imp.add([(2, "SPX", bar) for bar in _real_bars(ep(2024, 6, 3, 13, 30), 5)]) == []
    assert imp.commit({})["SPX"].replaced_synthetic == 10
    assert market.publish_until(["SPX"], utc(2024, 6, 4, 14, 0)) == []
    assert store.sources("SPX") == {BarSource.IMPORTED} and store.bar_count("SPX") == 5


def test_bars_stored_before_provenance_are_adopted_only_if_they_are_this_simulations(
        market: SimMarket, store: MarketStore) -> None:
    from app.storage.records import BarSource
    market.ensure_history("AAPL", 2, before=utc(2024, 6, 5, 0, 0))
    store.upsert_bars("SPX", _real_bars(ep(2024, 6, 4, 13, 30), 30), source=BarSource.IMPORTED)
    conn = store.connection  # what an older AutoTrader left: the same rows with no source
    conn.execute("UPDATE bars SET source = 0")
    conn.execute("UPDATE coverage SET source = 0")
    conn.execute("DELETE FROM bar_sources")
    conn.execute("INSERT INTO bar_sources VALUES ('AAPL', 0), ('SPX', 0)")
    assert not market.has_real_bars("AAPL")  # compared with session_bars: relabelled simulated
    assert store.sources("AAPL") == {BarSource.SIMULATED}
    assert {r[7] for r in _all_rows(store, "AAPL")} == {BarSource.SIMULATED}
    assert market.ensure_history("AAPL", 3, before=utc(2024, 6, 5, 0, 0)) == 390  # the sim keeps working
    assert market.has_real_bars("SPX") and store.sources("SPX") == {BarSource.UNKNOWN}
