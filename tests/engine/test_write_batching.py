"""Bar writes are batched: one SQLite write transaction per market minute across symbols, both for the
simulated market (SimMarket.publish_until) and for the live stream (BarStream), on real files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.alpaca.bar_stream import BarStream, StreamBar
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.sim.market import SimMarket, SymbolBar
from app.storage.market_store import MarketStore
from app.storage.records import Bar
from tests.fakes.alpaca_server import FakeAlpaca

SYMBOLS = ["NVDA", "AAPL", "MSFT", "TSLA", "AMZN", "GOOG", "META", "SPY", "QQQ", "BRK.B"]
OPEN = datetime(2024, 6, 4, 13, 30, tzinfo=timezone.utc)  # Tuesday, a full summer session
WAIT_MS = 5000


def begins(statements: list[str]) -> int:
    return sum(1 for s in statements if s.lstrip().upper().startswith("BEGIN"))


@pytest.fixture(scope="module")
def cal() -> MarketCalendar:
    return MarketCalendar()


def open_store(path: Path, cal: MarketCalendar) -> MarketStore:
    return MarketStore(path, minute_filter=cal.is_session_minute)


# --- SimMarket --------------------------------------------------------------------------------


def test_sim_minute_with_ten_symbols_is_one_transaction(tmp_path, cal):
    with open_store(tmp_path / "stocks.db", cal) as store:
        market = SimMarket(cal, store, seed=3)
        market.publish_until(SYMBOLS, OPEN + timedelta(minutes=5))  # first sight: reads the store
        trace: list[str] = []
        store.connection.set_trace_callback(trace.append)
        for k in range(6, 16):
            trace.clear()
            out = market.publish_until(SYMBOLS, OPEN + timedelta(minutes=k, seconds=2))
            assert len(out) == 10 and {sb.bar.ts for sb in out} == {int((OPEN + timedelta(minutes=k - 1)).timestamp())}
            assert begins(trace) == 1, trace
        trace.clear()
        assert market.publish_until(SYMBOLS, OPEN + timedelta(minutes=15, seconds=30)) == []
        assert begins(trace) == 0  # nothing new: no write at all


def test_sim_batched_publish_returns_the_same_bars_as_one_symbol_at_a_time(tmp_path, cal):
    """The batched write changes nothing visible: same bars, same order, same store contents."""
    steps = [OPEN + timedelta(minutes=m, seconds=2) for m in (0, 1, 3, 4, 30, 31)]
    with open_store(tmp_path / "a.db", cal) as a, open_store(tmp_path / "b.db", cal) as b:
        batched, single = SimMarket(cal, a, seed=11), SimMarket(cal, b, seed=11)
        for now in steps:
            expected: list[SymbolBar] = []
            for symbol in SYMBOLS:
                expected.extend(single.publish_until([symbol], now))
            expected.sort(key=lambda sb: sb.bar.ts)  # stable: given symbol order within a minute
            assert batched.publish_until(SYMBOLS, now) == expected
        for symbol in SYMBOLS:
            assert a.last_bars(symbol, 100, 2**40) == b.last_bars(symbol, 100, 2**40)
        assert a.bar_count() == 10 * 31  # minutes 13:30-14:00 completed by 14:01:02


def test_sim_session_close_stores_bars_and_coverage_in_one_transaction(tmp_path, cal):
    day = OPEN.date()
    with open_store(tmp_path / "stocks.db", cal) as store:
        market = SimMarket(cal, store, seed=3)
        market.publish_until(SYMBOLS, OPEN + timedelta(hours=6))
        trace: list[str] = []
        store.connection.set_trace_callback(trace.append)
        out = market.publish_until(SYMBOLS, OPEN + timedelta(hours=7))  # after the 20:00 UTC close
        assert begins(trace) == 1 and len(out) == 10 * 30
        assert all(store.missing_sessions(s, [day]) == [] for s in SYMBOLS)
        assert store.bar_count() == 10 * 390


def test_sim_bad_symbol_in_the_list_writes_nothing(tmp_path, cal):
    from app.engine.brokers.protocol import InvalidSymbol

    with open_store(tmp_path / "stocks.db", cal) as store:
        market = SimMarket(cal, store, seed=3)
        with pytest.raises(InvalidSymbol):
            market.publish_until(["NVDA", "not a ticker"], OPEN + timedelta(minutes=5))
        assert store.bar_count() == 0
        # and the state was not advanced: the next call publishes everything
        assert len(market.publish_until(["NVDA"], OPEN + timedelta(minutes=5))) == 5


def test_sim_history_writes_bars_and_coverage_together(tmp_path, cal):
    with open_store(tmp_path / "stocks.db", cal) as store:
        market = SimMarket(cal, store, seed=3)
        trace: list[str] = []
        store.connection.set_trace_callback(trace.append)
        written = market.ensure_history("NVDA", 3, before=OPEN)
        assert written == 3 * 390 and begins(trace) == 3  # one per session, coverage included
        trace.clear()
        assert market.ensure_history("NVDA", 3, before=OPEN) == 0 and begins(trace) == 0


# --- BarStream --------------------------------------------------------------------------------


def test_stream_bars_of_a_minute_are_stored_in_one_transaction_then_emitted(fake_alpaca: FakeAlpaca, tmp_path,
                                                                           cal, qtbot):
    t0 = int(OPEN.timestamp()) + 3600
    stream = BarStream(fake_alpaca.key, fake_alpaca.secret, url=fake_alpaca.stream_url, feed="iex",
                       store_path=tmp_path / "stocks.db", calendar=cal, reconnect_backoff=(0.05, 0.2),
                       flush_delay_s=1.0)
    reader = open_store(tmp_path / "stocks.db", cal)
    try:
        trace: list[str] = []
        stream._store.connection.set_trace_callback(trace.append)
        received: list[StreamBar] = []
        stored_when_emitted: list[bool] = []

        def on_bar(item: StreamBar) -> None:
            received.append(item)
            # Emitted only once it is in stocks.db: another connection can already read it.
            stored_when_emitted.append(reader.latest_bar(item.symbol) == item.bar)

        stream.bar_received.connect(on_bar)
        stream.start()
        stream.set_symbols(SYMBOLS)
        qtbot.waitUntil(lambda: stream.status.state == "live", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: fake_alpaca.subscriptions() == set(SYMBOLS), timeout=WAIT_MS)
        trace.clear()
        for i, symbol in enumerate(SYMBOLS):
            assert fake_alpaca.push_bar(symbol, (t0, 100.0, 120.0, 99.5, 100.5 + i, 1200)) == 1
        qtbot.waitUntil(lambda: len(received) == 10, timeout=WAIT_MS)
        assert begins(trace) == 1, trace
        assert [r.symbol for r in received] == SYMBOLS  # arrival order kept
        assert received[3] == StreamBar("TSLA", Bar(t0, 100.0, 120.0, 99.5, 103.5, 1200))
        assert all(stored_when_emitted)
        assert reader.bar_count() == 10

        # The next minute: another single commit. A refused bar (outside the session) is dropped
        # at once and never emitted; the good ones still go out.
        trace.clear()
        night = int(datetime(2024, 6, 4, 3, 0, tzinfo=timezone.utc).timestamp())
        fake_alpaca.push_bar("NVDA", (night, 100.0, 101.0, 99.5, 100.5, 10), store=False)
        for symbol in SYMBOLS[:4]:
            fake_alpaca.push_bar(symbol, (t0 + 60, 100.0, 101.0, 99.5, 100.5, 1200))
        qtbot.waitUntil(lambda: len(received) == 14, timeout=WAIT_MS)
        qtbot.wait(100)
        assert begins(trace) == 1 and len(received) == 14
        assert all(r.bar.ts == t0 + 60 for r in received[10:])
    finally:
        stream.stop()
        reader.close()


def test_stream_stop_keeps_bars_still_waiting_for_their_flush(fake_alpaca: FakeAlpaca, tmp_path, cal, qtbot):
    t0 = int(OPEN.timestamp()) + 3600
    stream = BarStream(fake_alpaca.key, fake_alpaca.secret, url=fake_alpaca.stream_url, feed="iex",
                       store_path=tmp_path / "stocks.db", calendar=cal, reconnect_backoff=(0.05, 0.2),
                       flush_delay_s=1.0)
    received: list[StreamBar] = []
    stream.bar_received.connect(received.append)
    stream.start()
    stream.acquire("NVDA")
    qtbot.waitUntil(lambda: fake_alpaca.subscriptions() == {"NVDA"}, timeout=WAIT_MS)
    fake_alpaca.push_bar("NVDA", (t0, 100.0, 101.0, 99.5, 100.5, 1200))
    qtbot.waitUntil(lambda: bool(stream._pending), timeout=WAIT_MS)
    stream.stop()
    assert received == []  # stopped: nobody is told any more
    with open_store(tmp_path / "stocks.db", cal) as reader:
        assert reader.latest_bar("NVDA") == Bar(t0, 100.0, 101.0, 99.5, 100.5, 1200)


def test_flush_delay_is_bounded(tmp_path, cal, qtbot):
    from app.engine.alpaca.bar_stream import BarStreamError

    with pytest.raises(BarStreamError, match="flush delay"):
        BarStream("k", "s", url=None, feed="iex", store_path=tmp_path / "s.db", calendar=cal, flush_delay_s=5)


def test_a_flush_never_waits_on_another_connections_write_lock(tmp_path, cal, qtbot):
    """The stream's write runs on its writer thread: while the engine holds stocks.db's write lock,
    the UI thread's flush returns at once, and the bars are stored and emitted once the lock goes."""
    import sqlite3

    path = tmp_path / "stocks.db"
    stream = BarStream("k", "s", url=None, feed="iex", store_path=path, calendar=cal)
    received: list[StreamBar] = []
    stream.bar_received.connect(received.append)
    t0 = int(OPEN.timestamp()) + 600
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the engine mid-write
        stream._pending = [(s, Bar(t0, 10.0, 11.0, 9.0, 10.5, 100)) for s in SYMBOLS]
        stream._flush()  # returns although the write must wait for the lock
        qtbot.wait(200)
        assert received == []  # not stored yet, so not announced
        holder.execute("COMMIT")
        qtbot.waitUntil(lambda: len(received) == len(SYMBOLS), timeout=WAIT_MS)
        assert [r.symbol for r in received] == SYMBOLS
        with open_store(path, cal) as reader:
            assert reader.bar_count() == len(SYMBOLS)
    finally:
        holder.close()
        stream.stop()
