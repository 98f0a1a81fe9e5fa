"""BarStream: the real alpaca-py StockDataStream against the fake Alpaca server, on a Qt main thread."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import msgpack
import pytest
from alpaca.data.enums import DataFeed
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from app.engine.alpaca.bar_stream import (
    REASON_AUTH,
    REASON_CONNECTION_LIMIT,
    BarStream,
    BarStreamError,
    GapFill,
    StreamBar,
    bar_from_message,
    classify_stream_error,
)
from app.engine.events import StreamStatus
from app.engine.marketdata.calendar import MarketCalendar
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource
from tests.fakes.alpaca_server import FakeAlpaca
from tests.fakes.fixtures import data_client, fake_alpaca  # noqa: F401

T0 = int(datetime(2024, 6, 3, 14, 30, tzinfo=timezone.utc).timestamp())  # a Monday, 10:30 New York
WAIT_MS = 5000


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar()


@pytest.fixture
def make_stream(fake_alpaca: FakeAlpaca, calendar: MarketCalendar, tmp_path: Path, qtbot):
    """Factory for started BarStreams on the fake (fast reconnect backoff); all stopped at teardown."""
    made: list[BarStream] = []

    def make(*, secret: str | None = None, history_fill=None, now=None) -> BarStream:
        stream = BarStream(fake_alpaca.key, secret or fake_alpaca.secret, url=fake_alpaca.stream_url,
                           feed="iex", store_path=tmp_path / "stocks.db", calendar=calendar,
                           history_fill=history_fill, now=now, reconnect_backoff=(0.05, 0.2))
        made.append(stream)
        stream.start()
        return stream

    yield make
    for stream in made:
        stream.stop()


def _bar(ts: int, close: float = 100.5) -> tuple:
    return (ts, 100.0, 101.0, 99.5, close, 1200)


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("alpaca-stream-") and t.is_alive()]


def _wait_state(qtbot, stream: BarStream, state: str, timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: stream.status.state == state, timeout=timeout)


def _wait_subs(qtbot, fake: FakeAlpaca, symbols: set[str], timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: fake.subscriptions() == symbols, timeout=timeout)


def _stored(tmp_path: Path, calendar: MarketCalendar, symbol: str) -> list[Bar]:
    with MarketStore(tmp_path / "stocks.db", minute_filter=calendar.is_session_minute) as store:
        return store.bars_between(symbol, T0 - 3600, T0 + 3600)


# --- pure helpers -----------------------------------------------------------------------------


def test_bar_from_message_reads_a_msgpack_timestamp() -> None:
    msg = {"T": "b", "S": "NVDA", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 300,
           "t": msgpack.Timestamp.from_unix(T0), "n": 3, "vw": 1.2}
    assert bar_from_message(msg) == ("NVDA", Bar(T0, 1.0, 2.0, 0.5, 1.5, 300))
    with pytest.raises(KeyError):
        bar_from_message({"S": "NVDA"})


def test_classify_stream_error() -> None:
    assert classify_stream_error("connection limit exceeded") == REASON_CONNECTION_LIMIT
    assert classify_stream_error("auth failed") == REASON_AUTH
    assert "sip" in classify_stream_error("insufficient subscription", "sip")
    assert classify_stream_error("ConnectionRefusedError: [Errno 111]") is None


def test_bad_input_is_refused(tmp_path: Path, calendar: MarketCalendar, qtbot) -> None:
    with pytest.raises(BarStreamError, match="feed"):
        BarStream("k", "s", url=None, feed="bogus", store_path=tmp_path / "s.db", calendar=calendar)
    with pytest.raises(BarStreamError, match="key and secret"):
        BarStream("k", "", url=None, feed="iex", store_path=tmp_path / "s.db", calendar=calendar)


# --- live stream ------------------------------------------------------------------------------


def test_subscribe_stores_and_signals_bars(make_stream, fake_alpaca: FakeAlpaca, tmp_path: Path,
                                           calendar: MarketCalendar, qtbot) -> None:
    stream = make_stream()
    received: list[StreamBar] = []
    stream.bar_received.connect(received.append)
    stream.acquire("NVDA")
    _wait_state(qtbot, stream, "live")
    _wait_subs(qtbot, fake_alpaca, {"NVDA"})

    assert fake_alpaca.push_bar("NVDA", _bar(T0)) == 1
    qtbot.waitUntil(lambda: len(received) == 1, timeout=WAIT_MS)
    assert received[0] == StreamBar("NVDA", Bar(T0, 100.0, 101.0, 99.5, 100.5, 1200))
    assert _stored(tmp_path, calendar, "NVDA") == [Bar(T0, 100.0, 101.0, 99.5, 100.5, 1200)]

    # A minute outside the session is refused by the store and not signalled.
    night = int(datetime(2024, 6, 3, 3, 0, tzinfo=timezone.utc).timestamp())
    fake_alpaca.push_bar("NVDA", _bar(night), store=False)
    fake_alpaca.push_bar("NVDA", _bar(T0 + 60, 100.7))
    qtbot.waitUntil(lambda: len(received) == 2, timeout=WAIT_MS)
    assert received[1].bar.ts == T0 + 60
    assert [b.ts for b in _stored(tmp_path, calendar, "NVDA")] == [T0, T0 + 60]


def test_reference_counting(make_stream, fake_alpaca: FakeAlpaca, qtbot) -> None:
    stream = make_stream()
    received: list[StreamBar] = []
    stream.bar_received.connect(received.append)
    calls = []
    for symbol in ("AAPL", "NVDA", "NVDA"):
        t = time.perf_counter()
        stream.acquire(symbol)
        calls.append(time.perf_counter() - t)
    _wait_state(qtbot, stream, "live")
    _wait_subs(qtbot, fake_alpaca, {"AAPL", "NVDA"})
    assert fake_alpaca.connection_count() == 1

    t = time.perf_counter()
    stream.release("NVDA")  # one user left: still subscribed
    calls.append(time.perf_counter() - t)
    qtbot.wait(300)
    assert fake_alpaca.subscriptions() == {"AAPL", "NVDA"}
    fake_alpaca.push_bar("NVDA", _bar(T0))
    qtbot.waitUntil(lambda: len(received) == 1, timeout=WAIT_MS)

    stream.release("NVDA")  # nobody left
    _wait_subs(qtbot, fake_alpaca, {"AAPL"})
    assert fake_alpaca.push_bar("NVDA", _bar(T0 + 60)) == 0
    fake_alpaca.push_bar("AAPL", _bar(T0 + 60))
    qtbot.waitUntil(lambda: len(received) == 2, timeout=WAIT_MS)
    assert [r.symbol for r in received] == ["NVDA", "AAPL"]
    assert stream.symbols == {"AAPL"}
    # Calls never wait for the stream's loop: the UI thread stays responsive.
    assert max(calls) < 0.05, calls

    with pytest.raises(BarStreamError, match="without a matching acquire"):
        stream.release("NVDA")
    assert stream.symbols == {"AAPL"}


def test_set_symbols_diffs_and_keeps_acquired(make_stream, fake_alpaca: FakeAlpaca, qtbot) -> None:
    stream = make_stream()
    stream.set_symbols({"AAPL", "MSFT"})
    _wait_subs(qtbot, fake_alpaca, {"AAPL", "MSFT"})
    stream.acquire("NVDA")
    stream.set_symbols(frozenset({"MSFT", "SPY"}))
    _wait_subs(qtbot, fake_alpaca, {"MSFT", "SPY", "NVDA"})
    stream.set_symbols(set())
    _wait_subs(qtbot, fake_alpaca, {"NVDA"})
    assert fake_alpaca.connection_count() == 1
    assert stream.status == StreamStatus("live")

    with pytest.raises(BarStreamError, match="invalid ticker"):
        stream.set_symbols({"MSFT", "../account"})
    with pytest.raises(BarStreamError):
        stream.set_symbols("MSFT")
    assert stream.symbols == {"NVDA"}


def test_no_sdk_thread_or_cpu_before_the_first_symbol(make_stream, fake_alpaca: FakeAlpaca, qtbot) -> None:
    stream = make_stream()
    statuses: list[StreamStatus] = []
    stream.status_changed.connect(statuses.append)
    cpu0 = time.process_time()
    qtbot.wait(1000)
    assert time.process_time() - cpu0 < 0.2
    assert _stream_threads() == []
    assert fake_alpaca.connection_count() == 0
    assert stream.status == StreamStatus("idle")

    stream.acquire("NVDA")
    _wait_state(qtbot, stream, "live")
    assert len(_stream_threads()) == 1
    stream.release("NVDA")  # zero symbols: the SDK thread and the connection go away
    qtbot.waitUntil(lambda: not _stream_threads(), timeout=2000)
    qtbot.waitUntil(lambda: fake_alpaca.connection_count() == 0, timeout=2000)
    assert stream.status == StreamStatus("idle")
    assert [s.state for s in statuses] == ["connecting", "live", "idle"]
    cpu0 = time.process_time()
    qtbot.wait(500)
    assert time.process_time() - cpu0 < 0.1

    stream.acquire("AAPL")  # and back: a fresh connection
    _wait_state(qtbot, stream, "live")
    _wait_subs(qtbot, fake_alpaca, {"AAPL"})


def _rest_fill(fake: FakeAlpaca, calendar: MarketCalendar, path: Path, calls: list):
    """history_fill as the app does it: REST bars from the (fake) Alpaca into a store on this thread."""
    client = data_client(fake)

    def fill(symbol: str, start_ts: int, end_ts: int) -> int:
        calls.append((symbol, start_ts, end_ts, threading.current_thread().name))
        req = StockBarsRequest(symbol_or_symbols=symbol, timeframe=TimeFrame.Minute, feed=DataFeed.IEX,
                               start=datetime.fromtimestamp(start_ts, timezone.utc),
                               end=datetime.fromtimestamp(end_ts, timezone.utc))
        bars = client.get_stock_bars(req).data.get(symbol, [])
        rows = [(int(b.timestamp.timestamp()), b.open, b.high, b.low, b.close, int(b.volume)) for b in bars]
        with MarketStore(path, minute_filter=calendar.is_session_minute) as store:
            return store.upsert_bars(symbol, rows, source=BarSource.ALPACA).stored

    return fill


def test_drop_reconnects_resubscribes_and_backfills(make_stream, fake_alpaca: FakeAlpaca, tmp_path: Path,
                                                    calendar: MarketCalendar, qtbot) -> None:
    now = datetime.fromtimestamp(T0 + 5 * 60 + 10, timezone.utc)  # 14:35:10: 14:34 is the last full minute
    calls: list = []
    stream = make_stream(history_fill=_rest_fill(fake_alpaca, calendar, tmp_path / "stocks.db", calls),
                         now=lambda: now)
    statuses: list[StreamStatus] = []
    stream.status_changed.connect(statuses.append)
    fills: list[GapFill] = []
    stream.gap_filled.connect(fills.append)
    stream.acquire("NVDA")
    stream.acquire("AAPL")
    _wait_state(qtbot, stream, "live")
    _wait_subs(qtbot, fake_alpaca, {"NVDA", "AAPL"})
    received: list[StreamBar] = []
    stream.bar_received.connect(received.append)
    fake_alpaca.push_bar("NVDA", _bar(T0))
    qtbot.waitUntil(lambda: len(received) == 1, timeout=WAIT_MS)

    # Bars of 14:31-14:34 are published while we are down: only REST has them.
    fake_alpaca.add_bars("NVDA", [_bar(T0 + 60 * i, 100 + i / 10) for i in range(1, 5)])
    fake_alpaca.drop_connections()
    qtbot.waitUntil(lambda: len(fills) == 2, timeout=WAIT_MS)
    states = [s.state for s in statuses]
    assert states[:2] == ["connecting", "live"]
    assert "reconnecting" in states[2:] and states[-1] == "live"
    _wait_subs(qtbot, fake_alpaca, {"NVDA", "AAPL"})

    # NVDA: from the minute after its last bar; AAPL (no bar yet): from the minute before the drop.
    by_symbol = {c[0]: c for c in calls}
    assert by_symbol["NVDA"][1:3] == (T0 + 60, T0 + 240)
    assert by_symbol["AAPL"][1:3] == (T0 + 240, T0 + 240)
    assert all(c[3] != "MainThread" for c in calls)  # REST never on the UI thread
    assert {f.symbol: f.stored for f in fills} == {"NVDA": 4, "AAPL": 0}
    assert [b.ts for b in _stored(tmp_path, calendar, "NVDA")] == [T0 + 60 * i for i in range(5)]

    # Live again: new bars flow.
    fake_alpaca.push_bar("NVDA", _bar(T0 + 300))
    qtbot.waitUntil(lambda: len(received) == 2, timeout=WAIT_MS)


def test_app_history_fill_uses_alpaca_history_on_its_own_thread(fake_alpaca: FakeAlpaca, tmp_path: Path,
                                                                calendar: MarketCalendar) -> None:
    pytest.importorskip("app.engine.alpaca.history")
    from app.engine.alpaca.bar_stream import _LazyHistoryFill
    from app.engine.system.data_folder import DataPaths
    from app.engine.system.settings import Settings

    settings = Settings(api_key=fake_alpaca.key, secret=fake_alpaca.secret, data_url=fake_alpaca.origin,
                        data_root=tmp_path)
    paths = DataPaths.for_folder(settings.data_dir()).create()
    fake_alpaca.add_bars("NVDA", [_bar(T0 + 60 * i, 100 + i / 10) for i in range(6)])
    fill = _LazyHistoryFill(settings, paths, calendar)
    out: list = []
    worker = threading.Thread(target=lambda: (out.append(fill("NVDA", T0 + 60, T0 + 240)), fill.close()))
    worker.start()
    worker.join(10)
    assert out == [4]
    with MarketStore(paths.stocks_db) as store:
        assert [b.ts for b in store.bars_between("NVDA", T0, T0 + 600)] == [T0 + 60 * i for i in range(1, 5)]


def test_connection_limit_is_failed_then_recovers(make_stream, fake_alpaca: FakeAlpaca, qtbot) -> None:
    fake_alpaca.faults.ws_connection_limit(times=None)
    stream = make_stream()
    stream.acquire("NVDA")
    _wait_state(qtbot, stream, "failed")
    assert stream.status.reason == REASON_CONNECTION_LIMIT
    qtbot.wait(400)  # retries keep it failed, no flicker back to 'connecting'
    assert stream.status == StreamStatus("failed", REASON_CONNECTION_LIMIT)

    fake_alpaca.faults.reset()  # the other app let go
    _wait_state(qtbot, stream, "live")
    _wait_subs(qtbot, fake_alpaca, {"NVDA"})


def test_auth_failure_is_failed_and_keeps_the_secret_out(make_stream, fake_alpaca: FakeAlpaca, qtbot,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stream = make_stream(secret="wrong-secret-xyz")
    stream.acquire("NVDA")
    _wait_state(qtbot, stream, "failed")
    assert stream.status == StreamStatus("failed", REASON_AUTH)
    assert "wrong-secret-xyz" not in caplog.text
    assert "wrong-secret-xyz" not in repr(stream)


def test_sip_without_subscription_ends_the_stream_as_failed(fake_alpaca: FakeAlpaca, tmp_path: Path,
                                                            calendar: MarketCalendar, qtbot) -> None:
    stream = BarStream(fake_alpaca.key, fake_alpaca.secret, url=fake_alpaca.stream_url_for("sip"), feed="sip",
                       store_path=tmp_path / "stocks.db", calendar=calendar, reconnect_backoff=(0.05, 0.2))
    try:
        stream.start()
        stream.acquire("NVDA")
        _wait_state(qtbot, stream, "failed")
        assert "paid Alpaca market-data subscription" in stream.status.reason
        qtbot.waitUntil(lambda: not _stream_threads(), timeout=2000)  # the SDK gave up: no retry storm
        qtbot.wait(200)
        assert stream.status.state == "failed"
    finally:
        stream.stop()


def test_stop_is_prompt(make_stream, fake_alpaca: FakeAlpaca, qtbot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="autotrader.engine.bar_stream")
    stream = make_stream()
    stream.set_symbols({"NVDA", "AAPL"})
    _wait_state(qtbot, stream, "live")
    _wait_subs(qtbot, fake_alpaca, {"NVDA", "AAPL"})
    stream.stop()  # prompt by design (STOP_TIMEOUT_S); the clean path is asserted, not the clock
    assert _stream_threads() == []
    qtbot.waitUntil(lambda: fake_alpaca.connection_count() == 0, timeout=2000)
    assert stream.status == StreamStatus("idle")
    assert "did not" not in caplog.text  # the clean path, not the emergency one
    stream.stop()  # idempotent
    with pytest.raises(BarStreamError, match="stopped"):
        stream.start()


def test_stop_right_after_the_first_symbol(make_stream, fake_alpaca: FakeAlpaca, qtbot) -> None:
    stream = make_stream()
    stream.acquire("NVDA")  # the SDK thread is starting up right now
    stream.stop()  # prompt by design (STOP_TIMEOUT_S); the clean path is asserted, not the clock
    assert _stream_threads() == []


def test_from_settings_follows_the_engine_signals(fake_alpaca: FakeAlpaca, tmp_path: Path, qtbot) -> None:
    from app.engine.host.signals import EngineSignals
    from app.engine.system.data_folder import DataPaths
    from app.engine.system.settings import Settings

    settings = Settings(api_key=fake_alpaca.key, secret=fake_alpaca.secret, stream_url=fake_alpaca.stream_url,
                        data_root=tmp_path)
    paths = DataPaths.for_folder(settings.data_dir()).create()
    signals = EngineSignals()
    published: list[StreamStatus] = []
    signals.stream_changed.connect(published.append)
    stream = BarStream.from_settings(settings, paths, signals)
    try:
        stream.start()
        signals.symbols_changed.emit(frozenset({"NVDA"}))
        _wait_subs(qtbot, fake_alpaca, {"NVDA"})
        qtbot.waitUntil(lambda: published and published[-1] == StreamStatus("live"), timeout=WAIT_MS)
        signals.symbols_changed.emit(frozenset())
        qtbot.waitUntil(lambda: published[-1] == StreamStatus("idle"), timeout=WAIT_MS)
    finally:
        stream.stop()
    sim = Settings(data_root=tmp_path)
    with pytest.raises(BarStreamError, match="keys"):
        BarStream.from_settings(sim, paths, signals)
