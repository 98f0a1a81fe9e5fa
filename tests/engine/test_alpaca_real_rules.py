"""The engine on Alpaca's real rules: the fake's realistic switches, through AlpacaBroker and the
real alpaca-py clients, and one full paper path where a wash-trade 403 shows on the card."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.alpaca.broker import AlpacaBroker
from app.engine.brokers.protocol import OrderRejected
from tests.engine.crash_child import FLIPPER_SOURCE, write_algorithm
from tests.engine.test_alpaca_broker import settings_for
from tests.fakes.alpaca_server import FakeAlpaca, wait_until
from tests.fakes.fixtures import trading_client


@pytest.fixture
def broker(fake_alpaca: FakeAlpaca, tmp_path: Path) -> AlpacaBroker:
    # A roomy HTTP timeout: these tests are about answers, not about a slow machine.
    return AlpacaBroker.from_settings(settings_for(fake_alpaca, tmp_path), timeout_s=5, retry_wait_s=0.01)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_numeric_quantities_and_nanosecond_times_are_read(broker, fake_alpaca):
    fake_alpaca.numeric_quantities = True
    fake_alpaca.time_digits = 9
    fake_alpaca.set_price("AAPL", "187.1234")
    broker.submit_market_order("num-1", "AAPL", "buy", 3)
    state = broker.wait_for_final("num-1", 3)
    assert (state.status, state.qty, state.filled_qty) == ("filled", 3, 3)
    assert state.filled_avg_price == Decimal("187.1234")
    assert state.filled_at is not None and state.filled_at.tzinfo is not None
    raw = fake_alpaca.order("num-1")
    assert raw["filled_qty"] == 3 and len(raw["filled_at"].split(".")[1]) == 10  # 9 digits + Z


def test_fractional_position_counts_whole_shares(broker, fake_alpaca):
    fake_alpaca.set_position("AAPL", "7.25", "100")
    assert broker.position("AAPL") == 7  # the engine trades whole shares; 0.25 is nobody's card


def test_margin_account_cash_can_be_negative(broker, fake_alpaca):
    fake_alpaca.account_type = "margin"
    fake_alpaca.set_cash(1000 * 100)
    broker.submit_market_order("lev-1", "AAPL", "buy", 1500)  # $150k on $100k cash
    assert broker.wait_for_final("lev-1", 3).status == "filled"
    assert broker.account_cash() == Decimal("-50000.00")  # cash, never buying power


@pytest.mark.parametrize("status", ["pending_new", "accepted_for_bidding", "held", "calculated", "stopped",
                                    "suspended", "pending_replace", "pending_cancel"])
def test_open_statuses_are_not_final(broker, fake_alpaca, status):
    fake_alpaca.faults.status_path(status, final_status=None, step=0.01)
    broker.submit_market_order("open-1", "AAPL", "buy", 2)
    wait_until(lambda: fake_alpaca.order("open-1")["status"] == status)
    state = broker.get_order("open-1")
    assert state.status == "submitted" and not state.is_final


def test_done_for_day_after_a_partial_fill_books_the_part(broker, fake_alpaca):
    fake_alpaca.faults.status_path("pending_new", "partially_filled", "done_for_day", final_status=None,
                                   step=0.05)
    broker.submit_market_order("dfd-1", "AAPL", "buy", 4)
    wait_until(lambda: fake_alpaca.order("dfd-1")["status"] == "done_for_day")
    state = broker.get_order("dfd-1")
    assert (state.status, state.filled_qty, state.is_final) == ("partial", 2, True)
    assert "done_for_day after 2 of 4" in state.reason


def test_replaced_order_ends_ours_without_a_fill(broker, fake_alpaca):
    fake_alpaca.faults.status_path("new", final_status="replaced", step=0.02)
    broker.submit_market_order("rep-1", "AAPL", "buy", 2)
    state = broker.wait_for_final("rep-1", 3)
    assert (state.status, state.filled_qty) == ("canceled", 0)
    assert "replaced" in state.reason


@pytest.mark.parametrize("rule", ["wash", "pdt", "inactive", "untradable"])
def test_alpacas_protections_are_refusals_with_its_reason(broker, fake_alpaca, rule):
    expected = {"wash": "potential wash trade detected. use complex orders",
                "pdt": "trade denied due to pattern day trading protection",
                "inactive": 'asset "DEAD" is not active',
                "untradable": 'asset "HALT" is not tradable'}[rule]
    symbol, side = "AAPL", "buy"
    if rule == "wash":
        fake_alpaca.fill_delay = None
        fake_alpaca.set_position("AAPL", 5, "100")
        trading_client(fake_alpaca).submit_order(_hand_order("by-hand", "sell"))  # placed in Alpaca's web page
    elif rule == "pdt":
        fake_alpaca.account_type, fake_alpaca.pdt_fields = "margin", True
        fake_alpaca.set_cash(10_000)
        fake_alpaca.set_daytrade_count(3)
        broker.submit_market_order("pdt-buy", "AAPL", "buy", 1)
        broker.wait_for_final("pdt-buy", 3)
        side = "sell"
    elif rule == "inactive":
        fake_alpaca.add_asset("DEAD", tradable=False, status="inactive")
        symbol = "DEAD"
    else:
        fake_alpaca.add_asset("HALT", tradable=False)
        symbol = "HALT"
    with pytest.raises(OrderRejected) as err:
        broker.submit_market_order("refused-1", symbol, side, 1)
    assert str(err.value).endswith(expected)
    assert fake_alpaca.order("refused-1") is None


def _hand_order(cid: str, side: str):
    from alpaca.trading.requests import MarketOrderRequest

    return MarketOrderRequest(symbol="AAPL", qty=1, side=side, time_in_force="day", client_order_id=cid)


def test_wash_trade_refusal_shows_on_the_card_and_faults_nothing(tmp_path):
    """A sell placed by hand is open at Alpaca; the card's buy meets the 403 and the next minute trades."""
    from app.engine.marketdata.clock import ManualClock
    from app.engine.host.wiring import EngineParts
    from app.engine.host.service import EngineService
    from app.engine.marketdata.calendar import MarketCalendar
    from app.engine.system.settings import Settings
    from app.engine.sim.market import SimMarket
    from app.storage.market_store import MarketStore

    algos = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    cal = MarketCalendar()
    scratch = MarketStore(tmp_path / "scratch.db")
    sim = SimMarket(cal, scratch, seed=7)
    bars = [b for d in (*cal.sessions_between(date(2024, 5, 28), date(2024, 6, 3)), date(2024, 6, 4))
            for b in sim.session_bars("AAPL", d)]
    scratch.close()
    clock = ManualClock(utc(2024, 6, 4, 15, 0, 2))
    with FakeAlpaca(cash=50_000, fill_delay=0.05, account_type="margin") as fake:
        fake.numeric_quantities = True
        fake.time_digits = 9
        fake.add_bars("AAPL", [tuple(b) for b in bars])
        fake.set_now(clock.now)
        fake.set_position("AAPL", 5, "100")
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, data_root=tmp_path / "data",
                            trading_url=fake.origin, data_url=fake.origin, stream_url=fake.stream_url,
                            algorithm_dirs=(algos,))
        broker = AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)
        parts = EngineParts.build(settings, clock=clock, broker=broker)
        try:
            service = EngineService(parts)
            card = service.create_instance("AAPL", "flipper", "5000")
            fake.faults.status_path("new", final_status=None, symbol="AAPL")  # the hand order stays open
            hand = trading_client(fake).submit_order(_hand_order("by-hand", "sell"))

            def step(minute: datetime):
                clock.set(minute + timedelta(seconds=2))
                parts.feed.set_symbols(["AAPL"])
                parts.feed.poll(clock.now())
                return parts.cycle.run_minute(minute)

            first = step(utc(2024, 6, 4, 15, 1))
            (outcome,) = first.outcomes
            assert outcome.action == "order-problem" and not first.faults
            assert "potential wash trade detected. use complex orders" in outcome.reason
            (snapshot,) = service.cards()
            assert snapshot.faulted_reason is None
            assert "potential wash trade detected" in snapshot.refused_reason
            assert parts.system.get_instance(card).faulted_reason is None

            trading_client(fake).cancel_order_by_id(hand.id)
            second = step(utc(2024, 6, 4, 15, 2))
            (bought,) = second.fills  # numeric quantities and 9-digit times, read and booked
            assert bought.side == "buy" and bought.shares > 0
            (snapshot,) = service.cards()
            assert snapshot.refused_reason is None and snapshot.shares == bought.shares
            # Booked at Alpaca's own fill time, read from its 9-digit timestamp.
            assert parts.system.get_transactions(card)[0].timestamp == "2024-06-04T15:02:02Z"
        finally:
            parts.close()
