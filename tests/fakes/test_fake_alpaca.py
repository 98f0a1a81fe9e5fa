"""The fake Alpaca server, exercised through the real alpaca-py 0.44 clients."""

from __future__ import annotations

import json
import re
import logging
import subprocess
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pydantic
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.live.stock import StockDataStream
from alpaca.data.models import Bar
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus
from alpaca.trading.requests import GetCalendarRequest, GetOrdersRequest, MarketOrderRequest

from tests.fakes.alpaca_server import FakeAlpaca, wait_until
from tests.fakes.fixtures import StreamRunner, data_client, fake_alpaca, trading_client  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
T0 = 1704205800  # 2024-01-02 14:30:00 UTC, a session's first minute


def _order(cid: str, qty: int = 3, side: str = "buy", symbol: str = "AAPL") -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force="day",
                              client_order_id=cid)


def _final(client: TradingClient, cid: str, timeout: float = 3.0):
    """Poll by client_order_id until the order is final, like production must."""
    final = {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED}
    return wait_until(
        lambda: (o := client.get_order_by_client_id(cid)).status in final and o, timeout
    )


# ----------------------------------------------------------------------------- account / assets


def test_account_cash_is_parsed_from_string_fields(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.set_cash("54321.50")
    account = trading_client(fake_alpaca).get_account()
    assert Decimal(account.cash) == Decimal("54321.50")
    assert Decimal(account.buying_power) == 2 * Decimal("54321.50")  # a margin account, like paper ones
    assert account.status.value == "ACTIVE"
    fake_alpaca.account_type = "cash"
    account = trading_client(fake_alpaca).get_account()
    assert Decimal(account.buying_power) == Decimal("54321.50") and account.multiplier == "1"


def test_wrong_credentials_get_401_with_alpaca_body(fake_alpaca: FakeAlpaca) -> None:
    client = TradingClient("test-key", "wrong", paper=True, url_override=fake_alpaca.origin)
    with pytest.raises(APIError) as err:
        client.get_account()
    assert err.value.status_code == 401
    assert err.value.code == 40110000
    assert "wrong" not in repr(fake_alpaca) and "test-secret" not in repr(fake_alpaca)


def test_get_asset_known_unknown_and_path_traversal(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.add_asset("OTCX", tradable=False, status="inactive", exchange="OTC")
    assert client.get_asset("NVDA").tradable is True
    assert client.get_asset("OTCX").tradable is False
    with pytest.raises(APIError) as err:
        client.get_asset("ZZZZ")
    assert err.value.status_code == 404 and err.value.code == 40410000
    assert "ZZZZ" in err.value.message
    # requests/urllib3 removes dot segments client-side: the fake is asked for
    # /v2/account, and alpaca-py fails parsing the account as an Asset.
    fake_alpaca.clear_log()
    with pytest.raises(pydantic.ValidationError):
        client.get_asset("../account")
    assert [r.path for r in fake_alpaca.requests()] == ["/v2/account"]


# ----------------------------------------------------------------------------- orders


def test_market_order_fills_and_moves_cash_and_position(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.set_price("AAPL", "187.25")
    submitted = client.submit_order(_order("c-fill", qty=4))
    assert submitted.status == OrderStatus.ACCEPTED
    assert submitted.filled_avg_price is None
    order = _final(client, "c-fill")
    assert order.status == OrderStatus.FILLED
    assert Decimal(order.filled_avg_price) == Decimal("187.25")
    assert order.filled_qty == "4" and order.filled_at is not None
    assert Decimal(client.get_account().cash) == Decimal("100000") - 4 * Decimal("187.25")
    position = client.get_open_position("AAPL")
    assert position.qty == "4" and Decimal(position.avg_entry_price) == Decimal("187.25")
    # Selling it all closes the position.
    client.submit_order(_order("c-sell", qty=4, side="sell"))
    assert _final(client, "c-sell").status == OrderStatus.FILLED
    assert client.get_all_positions() == []
    assert Decimal(client.get_account().cash) == Decimal("100000")


def test_order_validation_errors(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    client.submit_order(_order("dup", qty=1))
    with pytest.raises(APIError) as dup:
        client.submit_order(_order("dup", qty=1))
    assert dup.value.status_code == 422 and dup.value.code == 40010001
    assert dup.value.message == "client_order_id must be unique"

    fake_alpaca.add_asset("HALT", tradable=False)
    with pytest.raises(APIError) as halted:
        client.submit_order(_order("h1", symbol="HALT"))
    assert halted.value.status_code == 422 and "not tradable" in halted.value.message

    fake_alpaca.set_cash(100)
    with pytest.raises(APIError) as poor:
        client.submit_order(_order("p1", qty=2))
    assert poor.value.status_code == 403 and poor.value.message == "insufficient buying power"

    with pytest.raises(APIError) as short:
        client.submit_order(_order("s1", qty=1, side="sell", symbol="MSFT"))
    assert short.value.status_code == 403 and "insufficient qty" in short.value.message

    headers = {"APCA-API-KEY-ID": fake_alpaca.key, "APCA-API-SECRET-KEY": fake_alpaca.secret}
    for qty in (0, -1, 1.5, "abc"):
        body = {"symbol": "AAPL", "qty": qty, "side": "buy", "type": "market", "time_in_force": "day"}
        resp = requests.post(fake_alpaca.origin + "/v2/orders", json=body, headers=headers, timeout=5)
        assert resp.status_code == 422, qty
    assert len(fake_alpaca.orders()) == 1  # only the first "dup" order exists


def test_partial_fill_then_canceled(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.faults.partial_fill(2, final_status="canceled", final_after=0.3)
    client.submit_order(_order("part", qty=5))
    wait_until(lambda: client.get_order_by_client_id("part").status == OrderStatus.PARTIALLY_FILLED)
    order = _final(client, "part")
    assert order.status == OrderStatus.CANCELED
    assert order.filled_qty == "2" and Decimal(order.filled_avg_price) == Decimal("100")
    assert order.canceled_at is not None
    assert client.get_open_position("AAPL").qty == "2"
    assert Decimal(client.get_account().cash) == Decimal("99800")


def test_rejection_changes_nothing(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.faults.reject()
    client.submit_order(_order("rej"))
    order = _final(client, "rej")
    assert order.status == OrderStatus.REJECTED and order.failed_at is not None
    assert order.filled_qty == "0" and order.filled_avg_price is None
    assert client.get_all_positions() == []
    assert Decimal(client.get_account().cash) == Decimal("100000")


def test_cancel_open_order_and_cannot_cancel_filled(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.fill_delay = None  # orders wait for fill_order()
    client = trading_client(fake_alpaca)
    open_order = client.submit_order(_order("open1"))
    wait_until(lambda: client.get_order_by_client_id("open1").status == OrderStatus.NEW)
    assert [o.client_order_id for o in client.get_orders()] == ["open1"]
    client.cancel_order_by_id(open_order.id)
    assert client.get_order_by_id(open_order.id).status == OrderStatus.CANCELED

    filled = client.submit_order(_order("fill1"))
    fake_alpaca.fill_order("fill1")
    with pytest.raises(APIError) as err:
        client.cancel_order_by_id(filled.id)
    assert err.value.status_code == 422 and "filled" in err.value.message
    closed = client.get_orders(GetOrdersRequest(status="closed"))
    assert {o.client_order_id for o in closed} == {"open1", "fill1"}


# ----------------------------------------------------------------------------- REST faults


def test_504_after_accept_sdk_retry_hits_duplicate_one_order_exists(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca, retry_wait=0.05)
    fake_alpaca.faults.gateway_timeout_after_accept()
    with pytest.raises(APIError) as err:
        client.submit_order(_order("once"))
    # The SDK retried POST /v2/orders by itself; the second try met the first order.
    assert err.value.status_code == 422 and err.value.message == "client_order_id must be unique"
    assert fake_alpaca.count("/v2/orders", "POST") == 2
    assert len(fake_alpaca.orders()) == 1
    assert _final(client, "once").status == OrderStatus.FILLED


def test_429_burst_recovers_through_sdk_retry(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca, retry_wait=0.05)
    fake_alpaca.faults.rate_limit("/v2/account", times=3)
    assert client.get_account().cash is not None
    assert [r.status for r in fake_alpaca.requests("/v2/account")] == [429, 429, 429, 200]
    fake_alpaca.faults.rate_limit("/v2/account", times=4)  # one more than _retry
    with pytest.raises(APIError) as err:
        client.get_account()
    assert err.value.status_code == 429 and err.value.code == 42910000


def test_5xx_is_not_retried_and_body_may_be_html(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca, retry_wait=0.05)
    fake_alpaca.faults.server_errors("/v2/clock", 502, times=1)
    with pytest.raises(APIError) as err:
        client.get_clock()
    assert err.value.status_code == 502
    with pytest.raises(json.JSONDecodeError):
        _ = err.value.code  # gateway pages are HTML: APIError.code cannot parse them
    assert client.get_clock() is not None  # recovered
    assert fake_alpaca.count("/v2/clock") == 2


def test_hung_request_is_cut_by_session_timeout(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca, timeout=0.3)
    release = fake_alpaca.faults.hang("/v2/orders", method="POST", after_handling=True)
    with pytest.raises(requests.exceptions.ReadTimeout):  # while the fake still holds the answer
        client.submit_order(_order("slow"))
    release.set()
    # The order was accepted before the answer stalled: look it up, never resubmit blindly.
    assert _final(client, "slow").status == OrderStatus.FILLED
    assert len(fake_alpaca.orders()) == 1


# ----------------------------------------------------------------------------- clock / calendar


def test_clock_and_calendar_follow_xnys(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.set_now(datetime(2024, 7, 3, 17, 10, tzinfo=timezone.utc))  # after 13:00 early close
    clock = client.get_clock()
    assert clock.is_open is False
    assert clock.next_open == datetime(2024, 7, 5, 13, 30, tzinfo=timezone.utc)
    fake_alpaca.set_now(datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc))
    clock = client.get_clock()
    assert clock.is_open is True
    assert clock.next_close == datetime(2024, 1, 2, 21, 0, tzinfo=timezone.utc)
    days = client.get_calendar(GetCalendarRequest(start=date(2024, 7, 1), end=date(2024, 7, 5)))
    assert [d.date for d in days] == [date(2024, 7, d) for d in (1, 2, 3, 5)]
    assert days[2].close == datetime(2024, 7, 3, 13, 0)  # naive ET, as alpaca-py parses it


# ----------------------------------------------------------------------------- market data REST


def test_three_page_bar_fetch_across_symbols(fake_alpaca: FakeAlpaca) -> None:
    for symbol in ("MSFT", "AAPL"):
        fake_alpaca.add_bars(symbol, [(T0 + 60 * i, 10, 11, 9, 10.5, 100) for i in range(11_000)])
    client = data_client(fake_alpaca)
    request = StockBarsRequest(
        symbol_or_symbols=["MSFT", "AAPL"], timeframe=TimeFrame.Minute, feed="iex",
        start=datetime.fromtimestamp(T0, timezone.utc), end=datetime(2024, 2, 1, tzinfo=timezone.utc),
        limit=21_500,
    )
    barset = client.get_stock_bars(request)
    calls = fake_alpaca.requests("/v2/stocks/bars")
    assert [c.param("limit") for c in calls] == ["10000", "10000", "1500"]
    assert calls[0].param("page_token") is None and calls[1].param("page_token")
    assert calls[0].param("timeframe") == "1Min" and calls[0].param("feed") == "iex"
    assert len(barset["AAPL"]) == 11_000 and len(barset["MSFT"]) == 10_500  # symbol order, then time
    first = barset["AAPL"][0]
    assert first.timestamp == datetime.fromtimestamp(T0, timezone.utc) and first.close == 10.5


def test_bars_page_json_and_free_plan_sip_refusal(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.add_bars("AAPL", [(T0, 1, 2, 0.5, 1.5, 10), (T0 + 60, 1, 2, 0.5, 1.6, 20)])
    fake_alpaca.add_bars("SPY", [(T0, 5, 6, 4, 5.5, 30)])
    headers = {"APCA-API-KEY-ID": fake_alpaca.key, "APCA-API-SECRET-KEY": fake_alpaca.secret}
    params = {"symbols": "SPY,AAPL", "timeframe": "1Min", "start": "2024-01-02T00:00:00Z",
              "end": "2024-01-03T00:00:00Z", "limit": 2, "feed": "iex"}
    page1 = requests.get(fake_alpaca.origin + "/v2/stocks/bars", params=params, headers=headers, timeout=5).json()
    assert page1["bars"] == {"AAPL": [
        {"t": "2024-01-02T14:30:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10, "n": 1, "vw": 1.3333},
        {"t": "2024-01-02T14:31:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.6, "v": 20, "n": 1, "vw": 1.3667},
    ]}
    page2 = requests.get(fake_alpaca.origin + "/v2/stocks/bars", headers=headers, timeout=5,
                         params={**params, "page_token": page1["next_page_token"]}).json()
    assert list(page2["bars"]) == ["SPY"] and page2["next_page_token"] is None
    single = requests.get(fake_alpaca.origin + "/v2/stocks/AAPL/bars", headers=headers, timeout=5,
                          params={**params, "timeframe": "5Min"}).json()
    assert single["symbol"] == "AAPL" and single["bars"][0]["v"] == 30 and single["bars"][0]["c"] == 1.6
    # The default feed is SIP; a free account may not read the last 15 minutes of it.
    with pytest.raises(APIError) as err:
        data_client(fake_alpaca).get_stock_bars(
            StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute))
    assert err.value.status_code == 403 and "SIP" in err.value.message


# ----------------------------------------------------------------------------- stream


def test_stream_delivers_bar_and_tracks_subscriptions(fake_alpaca: FakeAlpaca) -> None:
    received: list[Bar] = []

    async def on_bar(bar: Bar) -> None:
        received.append(bar)

    with StreamRunner(fake_alpaca) as runner:
        runner.stream.subscribe_bars(on_bar, "AAPL", "MSFT")  # from this (non-stream) thread
        wait_until(lambda: fake_alpaca.subscriptions() == {"AAPL", "MSFT"})
        assert fake_alpaca.push_bar("AAPL", (T0, 1, 2, 0.5, 1.5, 1000)) == 1
        assert fake_alpaca.push_bar("TSLA", (T0, 1, 2, 0.5, 1.5, 1000)) == 0
        bar = wait_until(lambda: received and received[0])
        assert bar.symbol == "AAPL" and bar.close == 1.5 and bar.volume == 1000
        assert bar.timestamp == datetime.fromtimestamp(T0, timezone.utc)
        runner.stream.unsubscribe_bars("MSFT")
        wait_until(lambda: fake_alpaca.subscriptions() == {"AAPL"})
        assert fake_alpaca.bar_count("AAPL") == 1  # pushed bars are served by REST too
    assert not runner.alive
    wait_until(lambda: fake_alpaca.connection_count() == 0)


def test_stream_reconnects_and_resubscribes_after_drop(fake_alpaca: FakeAlpaca) -> None:
    received: list[Bar] = []

    async def on_bar(bar: Bar) -> None:
        received.append(bar)

    with StreamRunner(fake_alpaca) as runner:
        runner.stream.subscribe_bars(on_bar, "NVDA")
        wait_until(lambda: fake_alpaca.subscriptions() == {"NVDA"})
        assert fake_alpaca.drop_connections() == 1
        wait_until(lambda: fake_alpaca.ws_connects_total == 2 and fake_alpaca.subscriptions() == {"NVDA"})
        fake_alpaca.push_bar("NVDA", (T0 + 60, 1, 2, 0.5, 1.5, 10))
        wait_until(lambda: received)


def test_stream_406_is_retried_forever_and_logged(fake_alpaca: FakeAlpaca, caplog) -> None:
    async def on_bar(bar: Bar) -> None:
        pass

    caplog.set_level(logging.INFO, logger="alpaca.data.live.websocket")
    fake_alpaca.faults.ws_connection_limit(times=None)
    with StreamRunner(fake_alpaca) as runner:
        runner.stream.subscribe_bars(on_bar, "AAPL")
        wait_until(lambda: fake_alpaca.ws_connects_total >= 3)
        assert runner.alive  # no exception escapes run()
        assert fake_alpaca.subscriptions() == set()
        fake_alpaca.faults.ws_connection_limit(times=0)  # the other session went away
        wait_until(lambda: fake_alpaca.subscriptions() == {"AAPL"})
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "connection limit exceeded" in errors[0].getMessage()


def test_second_stream_hits_free_plan_limit_and_bad_secret_fails_auth(fake_alpaca: FakeAlpaca) -> None:
    async def on_bar(bar: Bar) -> None:
        pass

    with StreamRunner(fake_alpaca) as first, StreamRunner(fake_alpaca) as second:
        first.stream.subscribe_bars(on_bar, "AAPL")
        wait_until(lambda: fake_alpaca.subscriptions() == {"AAPL"})
        second.stream.subscribe_bars(on_bar, "MSFT")
        wait_until(lambda: fake_alpaca.ws_connects_total >= 3)
        assert fake_alpaca.subscriptions() == {"AAPL"}
    with StreamRunner(fake_alpaca, secret="nope") as bad:
        bad.stream.subscribe_bars(on_bar, "AAPL")
        before = fake_alpaca.ws_connects_total
        wait_until(lambda: fake_alpaca.ws_connects_total >= before + 2)
        assert fake_alpaca.subscriptions() == set()


def test_silent_stream_is_cured_by_sdk_data_timeout(fake_alpaca: FakeAlpaca) -> None:
    received: list[Bar] = []

    async def on_bar(bar: Bar) -> None:
        received.append(bar)

    with StreamRunner(fake_alpaca, data_timeout=0.5) as runner:
        runner.stream.subscribe_bars(on_bar, "AAPL")
        wait_until(lambda: fake_alpaca.subscriptions() == {"AAPL"})
        fake_alpaca.push_bar("AAPL", (T0, 1, 2, 0.5, 1.5, 10))
        wait_until(lambda: len(received) == 1)
        assert fake_alpaca.silence_stream() == 1
        assert fake_alpaca.push_bar("AAPL", (T0 + 60, 1, 2, 0.5, 1.5, 10)) == 0
        assert fake_alpaca.connection_count() == 1  # still connected, just mute
        wait_until(lambda: fake_alpaca.ws_connects_total == 2 and fake_alpaca.subscriptions() == {"AAPL"})
        assert fake_alpaca.push_bar("AAPL", (T0 + 120, 1, 2, 0.5, 1.5, 10)) == 1
        wait_until(lambda: len(received) == 2)


def test_stream_url_override_replaces_whole_url(fake_alpaca: FakeAlpaca) -> None:
    stream = StockDataStream(fake_alpaca.key, fake_alpaca.secret, url_override=fake_alpaca.stream_url)
    assert stream._endpoint == fake_alpaca.stream_url


# ----------------------------------------------------------------------------- misc


def test_reset_restores_defaults(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.set_cash(5)
    fake_alpaca.add_bars("AAPL", [(T0, 1, 1, 1, 1, 1)])
    fake_alpaca.faults.rate_limit("/v2/clock", times=None)
    fake_alpaca.reset()
    assert Decimal(client.get_account().cash) == Decimal("100000")
    assert fake_alpaca.bar_count("AAPL") == 0
    assert client.get_clock() is not None


def test_standalone_process_serves_until_terminated() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.alpaca_server", "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        origin = proc.stdout.readline().strip()
        assert origin.startswith("http://127.0.0.1:")
        assert proc.stdout.readline().strip() == origin.replace("http", "ws") + "/v2/iex"
        client = TradingClient("test-key", "test-secret", paper=True, url_override=origin)
        assert Decimal(client.get_account().cash) == Decimal("100000")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


# ----------------------------------------------------------------------------- Alpaca's real rules


def test_status_path_walks_every_open_status_to_each_end(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    path = ("pending_new", "accepted_for_bidding", "held", "calculated", "stopped", "suspended",
            "pending_replace", "new", "partially_filled", "done_for_day")
    fake_alpaca.faults.status_path(*path, final_status="expired", step=0.08)
    client.submit_order(_order("walk", qty=4))
    seen: list[str] = []

    def record() -> bool:
        status = client.get_order_by_client_id("walk").status.value
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == "expired"

    wait_until(record, timeout=5, interval=0.005)
    assert [s for s in seen if s != "accepted"] == [*path, "expired"]
    order = client.get_order_by_client_id("walk")
    assert order.filled_qty == "2" and order.expired_at is not None  # half filled, then the day ended
    assert fake_alpaca.position_qty("AAPL") == 2

    for end, stamp in (("canceled", "canceled_at"), ("rejected", "failed_at"), ("filled", "filled_at")):
        fake_alpaca.faults.status_path("pending_new", final_status=end, step=0.02)
        client.submit_order(_order(f"end-{end}", qty=1, symbol="MSFT"))
        done = _final(client, f"end-{end}")
        assert done.status.value == end and getattr(done, stamp) is not None


def test_status_path_replaced_hands_the_rest_to_a_new_order(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.faults.status_path("new", "pending_replace", final_status="replaced", step=0.02)
    first = client.submit_order(_order("rep", qty=3))
    old = wait_until(lambda: (o := client.get_order_by_client_id("rep")).status.value == "replaced" and o)
    assert old.replaced_at is not None and old.replaced_by is not None and old.filled_qty == "0"
    new = wait_until(lambda: (o := client.get_order_by_id(old.replaced_by)).status == OrderStatus.FILLED and o)
    assert str(new.replaces) == str(first.id) and new.client_order_id != "rep" and new.qty == "3"
    assert fake_alpaca.position_qty("AAPL") == 3


def test_cancel_goes_through_pending_cancel_when_delayed(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.fill_delay = None
    fake_alpaca.cancel_delay = 0.3
    client = trading_client(fake_alpaca)
    order = client.submit_order(_order("pc"))
    client.cancel_order_by_id(order.id)
    assert client.get_order_by_id(order.id).status == OrderStatus.PENDING_CANCEL
    assert _final(client, "pc").status == OrderStatus.CANCELED


def test_numeric_quantities_and_nanosecond_timestamps(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.numeric_quantities = True
    fake_alpaca.time_digits = 9
    fake_alpaca.set_price("AAPL", "187.5")
    client = trading_client(fake_alpaca)
    client.submit_order(_order("num", qty=2))
    _final(client, "num")
    headers = {"APCA-API-KEY-ID": fake_alpaca.key, "APCA-API-SECRET-KEY": fake_alpaca.secret}
    raw = requests.get(fake_alpaca.origin + "/v2/orders:by_client_order_id", timeout=5, headers=headers,
                       params={"client_order_id": "num"}).json()
    assert raw["qty"] == 2 and raw["filled_qty"] == 2 and raw["filled_avg_price"] == 187.5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", raw["filled_at"])
    clock = requests.get(fake_alpaca.origin + "/v2/clock", headers=headers, timeout=5).json()
    assert re.fullmatch(r".*T\d\d:\d\d:\d\d\.\d{9}[-+]\d\d:\d\d", clock["timestamp"])
    # alpaca-py reads both forms.
    order = client.get_order_by_client_id("num")
    assert float(order.filled_qty) == 2 and order.filled_at is not None
    assert client.get_clock().timestamp is not None


def test_fractional_position_is_a_decimal_string(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.set_position("AAPL", "2.5", "100")
    client = trading_client(fake_alpaca)
    assert client.get_open_position("AAPL").qty == "2.5"
    client.submit_order(_order("frac-sell", qty=2, side="sell"))
    assert _final(client, "frac-sell").status == OrderStatus.FILLED
    assert client.get_open_position("AAPL").qty == "0.5"
    with pytest.raises(APIError) as err:
        client.submit_order(_order("too-many", qty=1, side="sell"))
    assert err.value.status_code == 403 and "available: 0.5" in err.value.message


def test_margin_account_spends_past_its_cash(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.account_type = "margin"
    fake_alpaca.set_cash(10_000)
    client = trading_client(fake_alpaca)
    account = client.get_account()
    assert account.multiplier == "2" and Decimal(account.buying_power) == Decimal(20_000)
    assert account.shorting_enabled is True
    client.submit_order(_order("lever", qty=150))  # $15,000 of stock on $10,000 cash
    assert _final(client, "lever").status == OrderStatus.FILLED
    account = client.get_account()
    assert Decimal(account.cash) == Decimal(-5000)
    assert Decimal(account.equity) == Decimal(10_000) and Decimal(account.long_market_value) == 15_000
    assert Decimal(account.buying_power) == Decimal(5000)
    # Post-2026-07-06 accounts carry no pattern-day-trader fields.
    assert account.pattern_day_trader is None and account.daytrade_count is None


def test_wash_trade_403_while_an_opposite_order_is_open(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.fill_delay = None
    fake_alpaca.set_position("AAPL", 5, "100")
    client = trading_client(fake_alpaca)
    buy = client.submit_order(_order("wash-buy", qty=1))
    with pytest.raises(APIError) as err:
        client.submit_order(_order("wash-sell", qty=1, side="sell"))
    assert err.value.status_code == 403 and err.value.code == 40310000
    body = json.loads(str(err.value))
    assert body == {"code": 40310000, "message": "potential wash trade detected. use complex orders",
                    "existing_order_id": str(buy.id),
                    "reject_reason": "opposite side market/stop order exists"}
    client.submit_order(_order("same-side", qty=1))  # same side is fine
    client.submit_order(_order("other-symbol", qty=1, side="buy", symbol="MSFT"))
    fake_alpaca.fill_order("wash-buy")
    fake_alpaca.fill_order("same-side")
    client.submit_order(_order("wash-sell-2", qty=1, side="sell"))  # nothing opposite open now
    fake_alpaca.wash_trade_check = False
    client.submit_order(_order("wash-off", qty=1))  # the sell is open: allowed with the switch off
    assert fake_alpaca.order("wash-sell") is None


def test_pattern_day_trader_403_on_the_fourth_day_trade(fake_alpaca: FakeAlpaca) -> None:
    fake_alpaca.account_type = "margin"
    fake_alpaca.pdt_fields = True
    fake_alpaca.set_cash(20_000)
    client = trading_client(fake_alpaca)
    for n in range(3):  # three round trips in one session
        client.submit_order(_order(f"b{n}", qty=1))
        _final(client, f"b{n}")
        client.submit_order(_order(f"s{n}", qty=1, side="sell"))
        _final(client, f"s{n}")
    account = client.get_account()
    assert account.daytrade_count == 3 and account.pattern_day_trader is False
    client.submit_order(_order("b3", qty=1))
    _final(client, "b3")
    with pytest.raises(APIError) as err:
        client.submit_order(_order("s3", qty=1, side="sell"))
    assert err.value.status_code == 403 and err.value.code == 40310100
    assert err.value.message == "trade denied due to pattern day trading protection"
    fake_alpaca.set_position("MSFT", 1, "100")  # held overnight: selling it is no day trade
    client.submit_order(_order("overnight", qty=1, side="sell", symbol="MSFT"))
    fake_alpaca.set_cash(30_000)  # $25k or more: not limited
    client.submit_order(_order("rich", qty=1, side="sell"))
    assert _final(client, "rich").status == OrderStatus.FILLED


def test_inactive_and_untradable_assets_get_422(fake_alpaca: FakeAlpaca) -> None:
    client = trading_client(fake_alpaca)
    fake_alpaca.add_asset("DEAD", tradable=False, status="inactive")
    fake_alpaca.add_asset("HALT", tradable=False)
    with pytest.raises(APIError) as dead:
        client.submit_order(_order("d", symbol="DEAD"))
    assert (dead.value.status_code, dead.value.code, dead.value.message) == (
        422, 42210000, 'asset "DEAD" is not active')
    with pytest.raises(APIError) as halt:
        client.submit_order(_order("h", symbol="HALT"))
    assert halt.value.message == 'asset "HALT" is not tradable'
    assert fake_alpaca.orders() == []


def test_updated_bars_arrive_on_their_own_channel(fake_alpaca: FakeAlpaca) -> None:
    bars: list[Bar] = []
    updates: list[Bar] = []

    async def on_bar(bar: Bar) -> None:
        bars.append(bar)

    async def on_update(bar: Bar) -> None:
        updates.append(bar)

    with StreamRunner(fake_alpaca) as runner:
        runner.stream.subscribe_bars(on_bar, "AAPL")
        runner.stream.subscribe_updated_bars(on_update, "AAPL")
        wait_until(lambda: fake_alpaca.subscriptions("updatedBars") == {"AAPL"})
        fake_alpaca.push_bar("AAPL", (T0, 10, 11, 9, 10.5, 100))
        assert fake_alpaca.push_updated_bar("AAPL", (T0, 10, 12, 9, 11.5, 180)) == 1
        update = wait_until(lambda: updates and updates[0])
    assert len(bars) == 1 and update.close == 11.5 and update.volume == 180
    assert update.timestamp == datetime.fromtimestamp(T0, timezone.utc)
    served = data_client(fake_alpaca).get_stock_bars(StockBarsRequest(
        symbol_or_symbols="AAPL", timeframe=TimeFrame.Minute, feed="iex",
        start=datetime.fromtimestamp(T0, timezone.utc), end=datetime.fromtimestamp(T0 + 60, timezone.utc)))
    assert [b.close for b in served["AAPL"]] == [11.5]  # REST serves the corrected minute


def test_stream_errors_carry_alpacas_messages(fake_alpaca: FakeAlpaca, caplog) -> None:
    async def on_bar(bar: Bar) -> None:
        pass

    caplog.set_level(logging.INFO, logger="alpaca.data.live.websocket")
    fake_alpaca.ws_symbol_limit = 2
    with StreamRunner(fake_alpaca) as runner:
        runner.stream.subscribe_bars(on_bar, "AAPL")
        wait_until(lambda: fake_alpaca.subscriptions() == {"AAPL"})
        runner.stream.subscribe_bars(on_bar, "MSFT", "NVDA")  # three symbols: over the limit
        wait_until(lambda: any("symbol limit exceeded (405)" in r.getMessage() for r in caplog.records))
        assert fake_alpaca.subscriptions() == {"AAPL"}  # unchanged, connection still up
        assert fake_alpaca.connection_count() == 1
        fake_alpaca.ws_symbol_limit = None
        everything = {"AAPL", "MSFT", "NVDA"}
        for code, text in ((407, "slow client"), (500, "internal error")):
            before = fake_alpaca.ws_connects_total
            assert fake_alpaca.stream_error(code) == 1
            wait_until(lambda: any(f"{text} ({code})" in r.getMessage() for r in caplog.records))
            # Alpaca closed it; the SDK reconnects, logs in and subscribes again.
            wait_until(lambda: fake_alpaca.ws_connects_total > before and fake_alpaca.subscriptions() == everything)
        fake_alpaca.faults.ws_auth_timeout()
        before = fake_alpaca.ws_connects_total
        fake_alpaca.drop_connections()
        wait_until(lambda: any("auth timeout" in r.getMessage() for r in caplog.records))
        wait_until(lambda: fake_alpaca.ws_connects_total >= before + 2)
    with pytest.raises(ValueError):
        fake_alpaca.stream_error(408)


def test_free_plan_streams_at_most_30_symbols(fake_alpaca: FakeAlpaca) -> None:
    assert fake_alpaca.ws_symbol_limit == 30
    assert FakeAlpaca(free_plan=False).ws_symbol_limit is None
