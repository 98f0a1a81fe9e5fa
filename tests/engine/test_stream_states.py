"""Honest feed states: each Alpaca stream error, seen through the real StockDataStream against the
fake Alpaca, becomes its state and one sentence; updated bars replace the stored minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.alpaca import stream_errors as se
from app.engine.alpaca.bar_stream import BarStream, StreamBar
from app.engine.events import StreamStatus
from app.engine.marketdata.calendar import MarketCalendar
from app.storage.records import Bar
from tests.engine.test_bar_stream import (T0, WAIT_MS, _bar, _stored, _wait_state, _wait_subs,  # noqa: F401
                                          calendar, make_stream)
from tests.fakes.alpaca_server import STREAM_ERRORS, FakeAlpaca


@pytest.mark.parametrize("code, state, words", [
    (402, "failed", "API key or secret"),
    (404, "reconnecting", "login"),
    (405, "limited", "3 wanted"),
    (406, "failed", "another app"),
    (407, "reconnecting", "too slowly"),
    (409, "failed", "paid Alpaca market-data subscription"),
    (410, "failed", "does not offer"),
    (500, "reconnecting", "internal error"),
])
def test_each_code_and_each_message_has_its_state_and_sentence(code, state, words) -> None:
    by_code = se.stream_problem(code=code, text=STREAM_ERRORS[code], feed="sip", wanted=3)
    by_text = se.stream_problem(text=f"ValueError: {STREAM_ERRORS[code]}", feed="sip", wanted=3)
    assert by_code == by_text  # the SDK hands over only the message of a login error
    assert (by_code.code, by_code.state) == (code, state) and words in by_code.reason
    assert str(code) in by_code.reason


def test_unknown_errors_are_not_guessed() -> None:
    assert se.stream_problem(text="ConnectionRefusedError: [Errno 111] Connect call failed") is None
    wrong = se.stream_problem(text="InvalidStatusCode: server rejected WebSocket connection: HTTP 404")
    assert wrong == se.StreamProblem(404, "failed", se.REASON_WRONG_URL)


def _record(stream: BarStream) -> list[StreamStatus]:
    seen: list[StreamStatus] = []
    stream.status_changed.connect(seen.append)
    return seen


def test_symbol_limit_is_limited_not_live_and_clears(make_stream, fake_alpaca: FakeAlpaca, qtbot) -> None:
    fake_alpaca.ws_symbol_limit = 1
    stream = make_stream()
    stream.acquire("AAPL")
    _wait_subs(qtbot, fake_alpaca, {"AAPL"})
    _wait_state(qtbot, stream, "live")
    stream.acquire("MSFT")  # two symbols on a one-symbol plan
    _wait_state(qtbot, stream, "limited")
    assert stream.status.reason == se.REASON_SYMBOL_LIMIT.format(wanted=2)
    assert fake_alpaca.subscriptions() == {"AAPL"}  # Alpaca kept the earlier subscription
    stream.release("MSFT")  # the unsubscribe's ack covers every symbol wanted again
    _wait_state(qtbot, stream, "live")
    assert stream.status == StreamStatus("live")


@pytest.mark.parametrize("code, reason", [(407, se.REASON_SLOW_CLIENT), (500, se.REASON_INTERNAL)])
def test_slow_client_and_internal_error_say_so_then_reconnect(make_stream, fake_alpaca: FakeAlpaca, qtbot,
                                                              code, reason) -> None:
    stream = make_stream()
    seen = _record(stream)
    stream.acquire("NVDA")
    _wait_subs(qtbot, fake_alpaca, {"NVDA"})
    _wait_state(qtbot, stream, "live")
    before = fake_alpaca.ws_connects_total
    assert fake_alpaca.stream_error(code) == 1
    qtbot.waitUntil(lambda: fake_alpaca.ws_connects_total > before and stream.status.state == "live",
                    timeout=WAIT_MS)
    degraded = [s for s in seen if s.state != "live"][-2:]
    assert StreamStatus("reconnecting", reason) in degraded
    assert StreamStatus("reconnecting", "connection lost") not in seen  # the real cause, not a guess


def test_auth_timeout_keeps_retrying_with_its_reason(make_stream, fake_alpaca: FakeAlpaca, qtbot) -> None:
    fake_alpaca.faults.ws_auth_timeout(times=None)
    stream = make_stream()
    stream.acquire("NVDA")
    qtbot.waitUntil(lambda: stream.status.reason == se.REASON_AUTH_TIMEOUT, timeout=WAIT_MS)
    assert stream.status.state == "connecting"  # not failed: a later login may well be in time
    fake_alpaca.faults.reset()
    _wait_state(qtbot, stream, "live")


def test_wrong_stream_url_is_failed(fake_alpaca: FakeAlpaca, tmp_path: Path, calendar: MarketCalendar,
                                    qtbot) -> None:
    stream = BarStream(fake_alpaca.key, fake_alpaca.secret, url=f"ws://127.0.0.1:{fake_alpaca.port}/v2/iexx",
                       feed="iex", store_path=tmp_path / "stocks.db", calendar=calendar,
                       reconnect_backoff=(0.05, 0.2))
    try:
        stream.start()
        stream.acquire("NVDA")
        _wait_state(qtbot, stream, "failed")
        assert stream.status.reason == se.REASON_WRONG_URL
    finally:
        stream.stop()


def test_updated_bar_replaces_the_stored_minute(make_stream, fake_alpaca: FakeAlpaca, tmp_path: Path,
                                               calendar: MarketCalendar, qtbot) -> None:
    stream = make_stream()
    received: list[StreamBar] = []
    corrected: list[StreamBar] = []
    stream.bar_received.connect(received.append)
    stream.bar_corrected.connect(corrected.append)
    stream.acquire("NVDA")
    qtbot.waitUntil(lambda: fake_alpaca.subscriptions("updatedBars") == {"NVDA"}, timeout=WAIT_MS)
    fake_alpaca.push_bar("NVDA", _bar(T0))
    fake_alpaca.push_bar("NVDA", _bar(T0 + 60))
    qtbot.waitUntil(lambda: len(received) == 2, timeout=WAIT_MS)
    late = (T0, 100.0, 102.0, 99.0, 101.5, 1900)  # a late trade moved the close and the volume
    assert fake_alpaca.push_updated_bar("NVDA", late) == 1
    qtbot.waitUntil(lambda: len(corrected) == 1, timeout=WAIT_MS)
    assert corrected == [StreamBar("NVDA", Bar(*late))]
    assert _stored(tmp_path, calendar, "NVDA") == [Bar(*late), Bar(*_bar(T0 + 60))]
    assert len(received) == 2  # a correction is not a new minute
    stream.release("NVDA")
    qtbot.waitUntil(lambda: fake_alpaca.subscriptions("updatedBars") == set(), timeout=WAIT_MS)
