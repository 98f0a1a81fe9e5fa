"""AlpacaBroker through the real alpaca-py TradingClient against the fake Alpaca on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.alpaca.broker import AlpacaBroker, order_state
from app.engine.alpaca.clients import AlpacaSetupError, make_trading_client
from app.engine.brokers.protocol import (BrokerError, BrokerUnavailable, InsufficientFunds, InvalidSymbol, NotFound,
                               OrderRejected)
from app.engine.system.settings import Settings
from tests.fakes.alpaca_server import FakeAlpaca

TIMEOUT_S = 3.0  # generous: a busy 2-core machine must not turn a normal answer into a timeout


def settings_for(fake: FakeAlpaca, tmp_path: Path, **over) -> Settings:
    values = dict(api_key=fake.key, secret=fake.secret, paper=True, trading_url=fake.origin,
                  data_url=fake.origin, data_root=tmp_path)
    values.update(over)
    return Settings(**values)


@pytest.fixture
def broker(fake_alpaca: FakeAlpaca, tmp_path: Path) -> AlpacaBroker:
    return AlpacaBroker.from_settings(settings_for(fake_alpaca, tmp_path), timeout_s=TIMEOUT_S, retry_wait_s=0.01)


def test_name_and_start_log_say_paper_or_live_without_keys(fake_alpaca, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    paper = AlpacaBroker.from_settings(settings_for(fake_alpaca, tmp_path), retry_wait_s=0.01)
    live = AlpacaBroker.from_settings(settings_for(fake_alpaca, tmp_path, paper=False, feed="sip"),
                                      retry_wait_s=0.01)
    assert (paper.name, live.name) == ("alpaca-paper", "alpaca-live")
    assert "Alpaca PAPER" in caplog.text and "Alpaca LIVE" in caplog.text
    assert "IEX" in caplog.text and "SIP" in caplog.text
    assert fake_alpaca.key not in caplog.text and fake_alpaca.secret not in caplog.text
    assert fake_alpaca.secret not in repr(paper)


def test_no_keys_is_a_clear_error(tmp_path):
    with pytest.raises(AlpacaSetupError, match="ALPACA_API_KEY"):
        make_trading_client(Settings(data_root=tmp_path))


def test_session_has_a_timeout_and_retry_settings(fake_alpaca, tmp_path):
    client = make_trading_client(settings_for(fake_alpaca, tmp_path), timeout_s=7, retries=1, retry_wait_s=0.2)
    assert client._session.get_adapter("http://x").timeout_s == 7
    assert (client._retry, client._retry_wait) == (1, 0.2)
    # A pasted .../v2 suffix is dropped: the SDK appends /v2 itself.
    pasted = make_trading_client(settings_for(fake_alpaca, tmp_path, trading_url=fake_alpaca.origin + "/v2"))
    assert pasted._base_url == fake_alpaca.origin


# -- account and symbols ------------------------------------------------------------------------


def test_account_cash_is_cash_not_buying_power(broker, fake_alpaca):
    fake_alpaca.set_cash("12345.67")
    fake_alpaca.fill_delay = None  # the order stays open: buying power drops, cash does not
    broker.submit_market_order("hold-1", "AAPL", "buy", 10)
    assert broker.account_cash() == Decimal("12345.67")


def test_validate_symbol_accepts_an_active_tradable_stock(broker):
    assert broker.validate_symbol("AAPL") == "AAPL"


@pytest.mark.parametrize("bad", ["../account", "aapl", "", "AAPL/../x", "TOOLONG"])
def test_validate_symbol_refuses_malformed_before_any_request(broker, fake_alpaca, bad):
    with pytest.raises(InvalidSymbol):
        broker.validate_symbol(bad)
    assert fake_alpaca.count("/v2/") == 0


def test_validate_symbol_unknown_inactive_not_tradable(broker, fake_alpaca):
    fake_alpaca.add_asset("OLDCO", status="inactive")
    fake_alpaca.add_asset("NOTR", tradable=False)
    with pytest.raises(InvalidSymbol, match="^XYZQ is not a tradable US stock at Alpaca$"):
        broker.validate_symbol("XYZQ")
    with pytest.raises(InvalidSymbol, match="OLDCO is not a tradable US stock at Alpaca.*inactive"):
        broker.validate_symbol("OLDCO")
    with pytest.raises(InvalidSymbol, match="NOTR is not a tradable"):
        broker.validate_symbol("NOTR")


def test_position_zero_when_none(broker, fake_alpaca):
    fake_alpaca.set_position("NVDA", 7, "100")
    assert broker.position("NVDA") == 7
    assert broker.position("AAPL") == 0


# -- orders ---------------------------------------------------------------------------------------


def test_market_order_fills(broker, fake_alpaca):
    fake_alpaca.set_price("AAPL", "187.25")
    first = broker.submit_market_order("fill-1", "AAPL", "buy", 3)
    assert first.status == "submitted" and first.filled_avg_price is None and not first.is_final
    final = broker.wait_for_final("fill-1", 3.0)
    assert final.status == "filled" and final.is_final
    assert (final.filled_qty, final.filled_avg_price) == (3, Decimal("187.25"))
    assert final.filled_at is not None and final.filled_at.tzinfo is not None
    sent = fake_alpaca.order("fill-1")
    assert (sent["type"], sent["time_in_force"], sent["qty"], sent["side"]) == ("market", "day", "3", "buy")
    assert broker.position("AAPL") == 3


def test_partially_filled_is_not_final_until_it_ends(broker, fake_alpaca):
    fake_alpaca.fill_delay = None
    broker.submit_market_order("part-1", "AAPL", "buy", 5)
    fake_alpaca.fill_order("part-1", qty=2, price="50")
    state = broker.get_order("part-1")
    assert (state.status, state.filled_qty, state.is_final) == ("submitted", 2, False)
    fake_alpaca.expire_open_orders()
    state = broker.get_order("part-1")
    assert (state.status, state.filled_qty, state.filled_avg_price) == ("partial", 2, Decimal("50"))
    assert state.filled_at is not None  # Alpaca leaves filled_at null on a partial: updated_at is used


def test_partial_fill_then_canceled(broker, fake_alpaca):
    fake_alpaca.faults.partial_fill(2, final_status="canceled", final_after=0.1)
    broker.submit_market_order("part-2", "AAPL", "buy", 5)
    final = broker.wait_for_final("part-2", 3.0)
    assert (final.status, final.filled_qty, final.qty) == ("partial", 2, 5)
    assert "canceled" in final.reason


def test_rejected_order(broker, fake_alpaca):
    fake_alpaca.faults.reject()
    broker.submit_market_order("rej-1", "AAPL", "buy", 1)
    final = broker.wait_for_final("rej-1", 3.0)
    assert (final.status, final.filled_qty) == ("rejected", 0)


def test_insufficient_funds_and_shares(broker, fake_alpaca):
    fake_alpaca.set_cash(100)
    with pytest.raises(InsufficientFunds, match="insufficient buying power"):
        broker.submit_market_order("poor-1", "AAPL", "buy", 10)
    with pytest.raises(InsufficientFunds, match="insufficient qty"):
        broker.submit_market_order("poor-2", "AAPL", "sell", 1)
    assert fake_alpaca.orders() == []


@pytest.mark.parametrize("args", [("", "AAPL", "buy", 1), ("c", "aapl", "buy", 1), ("c", "AAPL", "short", 1),
                                  ("c", "AAPL", "buy", 0), ("c", "AAPL", "buy", 1.5), ("c", "AAPL", "buy", True)])
def test_bad_order_input_is_refused_locally(broker, fake_alpaca, args):
    with pytest.raises(OrderRejected):
        broker.submit_market_order(*args)
    assert fake_alpaca.count("/v2/orders") == 0


def test_unknown_symbol_order_is_rejected(broker, fake_alpaca):
    with pytest.raises(OrderRejected, match="XYZQ"):
        broker.submit_market_order("unk-1", "XYZQ", "buy", 1)


def test_get_order_unknown_is_none_and_wait_raises_not_found(broker):
    assert broker.get_order("never-sent") is None
    with pytest.raises(NotFound):
        broker.wait_for_final("never-sent", 0.3)


def test_same_client_id_twice_returns_the_first_order(broker, fake_alpaca):
    first = broker.submit_market_order("dup-1", "AAPL", "buy", 2)
    again = broker.submit_market_order("dup-1", "AAPL", "buy", 2)
    assert again.broker_order_id == first.broker_order_id
    assert len(fake_alpaca.orders()) == 1


def test_gateway_timeout_after_accept_leaves_exactly_one_order(broker, fake_alpaca):
    # The SDK re-POSTs on 504, gets 422 "client_order_id must be unique"; we ask by client id.
    fake_alpaca.faults.gateway_timeout_after_accept()
    state = broker.submit_market_order("gw-1", "AAPL", "buy", 4)
    assert state.client_order_id == "gw-1" and state.qty == 4
    assert len(fake_alpaca.orders()) == 1
    assert fake_alpaca.count("/v2/orders", method="POST") == 2
    assert broker.wait_for_final("gw-1", 3.0).status == "filled"


def test_hung_submit_is_unavailable_within_the_timeout(broker, fake_alpaca):
    fake_alpaca.faults.hang("/v2/orders", method="POST")
    with pytest.raises(BrokerUnavailable, match="not confirmed") as info:
        broker.submit_market_order("hang-1", "AAPL", "buy", 1)
    # It returned while the server still holds the request: the timeout works (no clock assert).
    assert "did not answer in time" in str(info.value)
    fake_alpaca.faults.release_hangs()
    assert fake_alpaca.orders() == []


def test_hung_answer_after_accept_returns_the_order(broker, fake_alpaca):
    fake_alpaca.faults.hang("/v2/orders", method="POST", after_handling=True)
    state = broker.submit_market_order("hang-2", "AAPL", "buy", 1)
    fake_alpaca.faults.release_hangs()
    assert state.client_order_id == "hang-2"
    assert len(fake_alpaca.orders()) == 1


def test_html_503_is_unavailable_without_html_in_the_message(broker, fake_alpaca):
    fake_alpaca.faults.server_errors("/v2/orders", 503, method="POST")
    with pytest.raises(BrokerUnavailable) as info:
        broker.submit_market_order("s503", "AAPL", "buy", 1)
    assert "503" in str(info.value) and "<html" not in str(info.value)
    assert fake_alpaca.orders() == []
    fake_alpaca.faults.server_errors("/v2/account", 502)
    with pytest.raises(BrokerUnavailable, match="502"):
        broker.account_cash()


def test_rate_limit_is_retried_by_the_sdk(broker, fake_alpaca):
    fake_alpaca.faults.rate_limit("/v2/account", times=2)
    assert broker.account_cash() == Decimal("100000.00")


def test_connection_refused_is_unavailable(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    settings = Settings(api_key="k", secret="s", trading_url=f"http://127.0.0.1:{port}", data_root=tmp_path)
    broker = AlpacaBroker.from_settings(settings, timeout_s=TIMEOUT_S, retry_wait_s=0.01)
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        broker.account_cash()
    with pytest.raises(BrokerUnavailable):
        broker.submit_market_order("conn-1", "AAPL", "buy", 1)


def test_cancel_open_order(broker, fake_alpaca):
    fake_alpaca.fill_delay = None
    broker.submit_market_order("can-1", "AAPL", "buy", 1)
    state = broker.cancel("can-1")
    assert state.status == "canceled" and state.filled_qty == 0
    assert broker.cancel("can-1").status == "canceled"  # already final: nothing sent
    assert broker.cancel("nope") is None


def test_status_mapping():
    base = {"id": "x", "client_order_id": "c", "symbol": "AAPL", "side": "buy", "qty": "5",
            "updated_at": "2024-01-02T15:00:00.123456789Z"}
    def status(s, filled="0"):
        return order_state({**base, "status": s, "filled_qty": filled, "filled_avg_price": "10"}).status
    assert status("filled", "5") == "filled"
    for pending in ("new", "accepted", "pending_new", "accepted_for_bidding", "held", "partially_filled"):
        assert status(pending) == "submitted"
    assert status("done_for_day", "2") == "partial" and status("done_for_day") == "submitted"
    assert status("expired", "1") == "partial" and status("expired") == "canceled"
    assert status("canceled") == "canceled" and status("rejected") == "rejected"
    unfilled = order_state({**base, "status": "new", "filled_qty": "0", "filled_avg_price": "0"})
    assert unfilled.filled_avg_price is None and unfilled.filled_at is None


def test_keys_never_in_errors_or_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key, secret = "AKTESTKEY9876", "SECRET-abcdef-123456"
    with FakeAlpaca(key=key, secret=secret) as fake:
        good = AlpacaBroker.from_settings(settings_for(fake, tmp_path), timeout_s=TIMEOUT_S, retry_wait_s=0.01)
        wrong = AlpacaBroker.from_settings(settings_for(fake, tmp_path, secret="wrong-" + secret),
                                           timeout_s=TIMEOUT_S, retry_wait_s=0.01)
        errors: list[BaseException] = []
        for call in (lambda: wrong.account_cash(), lambda: wrong.submit_market_order("k1", "AAPL", "buy", 1),
                     lambda: wrong.validate_symbol("AAPL"), lambda: good.validate_symbol("../account")):
            with pytest.raises(BrokerError) as info:
                call()
            errors.append(info.value)
        fake.faults.server_errors("/v2/account", 500, times=1)
        with pytest.raises(BrokerUnavailable) as info:
            good.account_cash()
        errors.append(info.value)
        assert "API key" in str(errors[0])
    text = caplog.text + " ".join(str(e) + repr(e) for e in errors) + repr(good)
    assert key not in text and secret not in text
