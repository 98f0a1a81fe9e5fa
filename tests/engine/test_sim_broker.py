"""SimBroker against a real MarketStore fed by SimMarket, a real calendar and a ManualClock."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.brokers.protocol import (
    Broker,
    InsufficientFunds,
    InvalidSymbol,
    MarketClosed,
    NotFound,
    OrderRejected,
)
from app.engine.marketdata.clock import ManualClock
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.sim.broker import SimBroker
from app.engine.sim.market import SimMarket
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource
from app.storage.sim_book_store import SimBookStore
from tests.engine.time_helpers import ep, utc

# Session under test: Tuesday 2024-06-04, summer time, so bars run 13:30-19:59 UTC.
SLIP = 5.0  # basis points




class World:
    """One sim engine's pieces on real files in a temporary folder."""

    def __init__(self, tmp_path: Path, cal: MarketCalendar, cash: str = "100000") -> None:
        self.tmp_path = tmp_path
        self.cal = cal
        self.clock = ManualClock(utc(2024, 6, 4, 13, 35, 2))
        self.store = MarketStore(tmp_path / "stocks.db", minute_filter=cal.is_session_minute)
        self.market = SimMarket(cal, self.store, seed=11)
        self.book = SimBookStore(tmp_path / "sim_book.db", starting_cash=Decimal(cash))
        self.broker = SimBroker(self.book, self.store, cal, self.clock.now, slippage_bps=SLIP)
        self.market.ensure_history("AAPL", 2, before=self.clock.now())
        self.publish()

    def publish(self, symbols: tuple[str, ...] = ("AAPL",)) -> None:
        self.market.publish_until(list(symbols), self.clock.now())

    def advance(self, minutes: int = 1) -> None:
        self.clock.advance(timedelta(minutes=minutes))
        self.publish()

    def bar_at(self, ts: int, symbol: str = "AAPL") -> Bar:
        return self.store.bars_between(symbol, ts, ts)[0]

    def reopen(self) -> None:
        """Simulate a restart: new connections and a new broker on the same files."""
        self.book.close()
        self.store.close()
        self.store = MarketStore(self.tmp_path / "stocks.db", minute_filter=self.cal.is_session_minute)
        self.market = SimMarket(self.cal, self.store, seed=11)
        self.book = SimBookStore(self.tmp_path / "sim_book.db")
        self.broker = SimBroker(self.book, self.store, self.cal, self.clock.now, slippage_bps=SLIP)

    def close(self) -> None:
        self.book.close()
        self.store.close()


@pytest.fixture
def world(tmp_path: Path, cal: MarketCalendar):
    w = World(tmp_path, cal)
    yield w
    w.close()


def test_sim_broker_satisfies_the_protocol(world: World) -> None:
    broker: Broker = world.broker
    assert broker.name == "sim"
    assert broker.validate_symbol("AAPL") == "AAPL"
    assert broker.validate_symbol("BRK.B") == "BRK.B"
    with pytest.raises(InvalidSymbol):
        broker.validate_symbol("../account")
    assert broker.account_cash() == Decimal("100000")
    assert broker.position("AAPL") == 0


def test_buy_stays_submitted_until_the_next_bar_then_fills_at_its_open(world: World) -> None:
    state = world.broker.submit_market_order("c1", "AAPL", "buy", 10)
    assert (state.status, state.broker_order_id, state.filled_qty) == ("submitted", "sim-000001", 0)
    assert not state.is_final
    # The decision minute is 13:35; its bar is not stored until 13:36.
    world.clock.advance(timedelta(seconds=50))
    world.publish()
    assert world.broker.get_order("c1").status == "submitted"  # type: ignore[union-attr]
    assert world.broker.account_cash() == Decimal("100000")

    world.advance()
    filled = world.broker.get_order("c1")
    fill_bar = world.bar_at(ep(2024, 6, 4, 13, 35))
    price = Decimal(str(fill_bar.open)) * Decimal("1.0005")
    assert filled is not None and filled.status == "filled" and filled.is_final
    assert filled.filled_qty == 10
    assert filled.filled_avg_price == price
    assert filled.filled_at == utc(2024, 6, 4, 13, 35)
    assert world.broker.account_cash() == Decimal("100000") - 10 * price
    assert world.broker.position("AAPL") == 10


def test_sell_fills_below_the_open_by_the_slippage(world: World) -> None:
    world.broker.submit_market_order("b", "AAPL", "buy", 5)
    world.advance()
    cash_after_buy = world.broker.account_cash()
    world.broker.submit_market_order("s", "AAPL", "sell", 5)
    world.advance()
    sold = world.broker.get_order("s")
    price = Decimal(str(world.bar_at(ep(2024, 6, 4, 13, 36)).open)) * Decimal("0.9995")
    assert sold is not None and sold.status == "filled" and sold.filled_avg_price == price
    assert world.broker.position("AAPL") == 0
    assert world.broker.account_cash() == cash_after_buy + 5 * price


def test_a_duplicate_client_id_returns_the_existing_order(world: World) -> None:
    first = world.broker.submit_market_order("dup", "AAPL", "buy", 10)
    again = world.broker.submit_market_order("dup", "AAPL", "buy", 10)
    assert again == first
    world.advance()
    filled_again = world.broker.submit_market_order("dup", "AAPL", "buy", 10)
    assert filled_again.status == "filled" and filled_again.broker_order_id == first.broker_order_id
    assert world.broker.position("AAPL") == 10  # one order, filled once
    assert world.broker.account_cash() == Decimal("100000") - 10 * filled_again.filled_avg_price


def test_insufficient_funds_counts_cash_promised_to_open_buys(tmp_path: Path, cal: MarketCalendar) -> None:
    w = World(tmp_path, cal, cash="1000")
    try:
        last = w.store.last_bars("AAPL", 1, ep(2024, 6, 4, 13, 35))[0].close
        affordable = int(1000 / (last * 1.0005))
        with pytest.raises(InsufficientFunds, match="costs about"):
            w.broker.submit_market_order("big", "AAPL", "buy", affordable + 1)
        assert w.broker.get_order("big") is None
        w.broker.submit_market_order("half", "AAPL", "buy", affordable // 2 + 1)
        with pytest.raises(InsufficientFunds):
            w.broker.submit_market_order("other-half", "AAPL", "buy", affordable // 2 + 1)
        assert w.broker.account_cash() == Decimal("1000")
    finally:
        w.close()


def test_no_short_selling_including_shares_already_being_sold(world: World) -> None:
    with pytest.raises(OrderRejected, match="no short selling"):
        world.broker.submit_market_order("s0", "AAPL", "sell", 1)
    world.broker.submit_market_order("b", "AAPL", "buy", 3)
    world.advance()
    world.broker.submit_market_order("s1", "AAPL", "sell", 2)
    with pytest.raises(OrderRejected, match="no short selling"):
        world.broker.submit_market_order("s2", "AAPL", "sell", 2)
    assert world.broker.get_order("s2") is None and world.broker.get_order("s0") is None


@pytest.mark.parametrize("moment", [
    utc(2024, 6, 4, 13, 29, 59),  # before the open
    utc(2024, 6, 4, 20, 0),  # at the close
    utc(2024, 6, 8, 15, 0),  # Saturday
    utc(2024, 7, 4, 15, 0),  # holiday
])
def test_market_closed(world: World, moment: datetime) -> None:
    world.clock.set(moment)
    with pytest.raises(MarketClosed, match="closed"):
        world.broker.submit_market_order("c", "AAPL", "buy", 1)
    assert world.broker.get_order("c") is None


@pytest.mark.parametrize("symbol, side, qty", [
    ("AAPL", "buy", 0), ("AAPL", "buy", -1), ("AAPL", "buy", 1.5), ("AAPL", "buy", True),
    ("AAPL", "short", 1), ("../x", "buy", 1), ("aapl", "buy", 1),
])
def test_bad_orders_are_rejected_and_nothing_is_placed(world: World, symbol: str, side: str, qty) -> None:
    with pytest.raises(OrderRejected):
        world.broker.submit_market_order("bad", symbol, side, qty)
    assert world.broker.get_order("bad") is None
    with pytest.raises(OrderRejected, match="client order id"):
        world.broker.submit_market_order("", "AAPL", "buy", 1)


def test_a_buy_without_any_price_is_rejected(world: World) -> None:
    with pytest.raises(OrderRejected, match="no price"):
        world.broker.submit_market_order("c", "NONE", "buy", 1)


def test_fill_waits_for_the_first_bar_at_or_after_the_decision_even_the_next_day(
        tmp_path: Path, cal: MarketCalendar) -> None:
    # An IEX-like store: nothing after 19:58 on Jun 4, next bar at Jun 5's open.
    with MarketStore(tmp_path / "stocks.db", minute_filter=cal.is_session_minute) as store, \
            SimBookStore(tmp_path / "book.db") as book:
        clock = ManualClock(utc(2024, 6, 4, 19, 59, 30))
        store.upsert_bars("GAP", [Bar(ep(2024, 6, 4, 19, 58), 50.0, 50.5, 49.5, 50.0, 100)], source=BarSource.ALPACA)
        broker = SimBroker(book, store, cal, clock.now)
        broker.submit_market_order("late", "GAP", "buy", 2)
        clock.set(utc(2024, 6, 5, 12, 0))
        assert broker.get_order("late").status == "submitted"  # type: ignore[union-attr]
        store.upsert_bars("GAP", [Bar(ep(2024, 6, 5, 13, 30), 51.25, 52.0, 51.0, 51.5, 100)], source=BarSource.ALPACA)
        filled = broker.get_order("late")
        assert filled is not None and filled.status == "filled"
        assert filled.filled_avg_price == Decimal("51.25")  # no slippage by default
        assert filled.filled_at == utc(2024, 6, 5, 13, 30)
        assert broker.account_cash() == Decimal("100000") - Decimal("102.50")


def test_state_survives_reopening_the_book(world: World) -> None:
    world.broker.submit_market_order("b", "AAPL", "buy", 7)
    world.advance()
    world.broker.submit_market_order("pending", "AAPL", "sell", 2)
    before = (world.broker.get_order("b"), world.broker.get_order("pending"),
              world.broker.account_cash(), world.broker.position("AAPL"))
    assert before[1].status == "submitted"  # type: ignore[union-attr]
    world.reopen()
    after = (world.broker.get_order("b"), world.broker.get_order("pending"),
             world.broker.account_cash(), world.broker.position("AAPL"))
    assert after == before
    # The order still open at the "crash" fills once the engine publishes the next bar.
    world.advance()
    assert world.broker.get_order("pending").status == "filled"  # type: ignore[union-attr]
    assert world.broker.position("AAPL") == 5


def test_wait_for_final(world: World) -> None:
    world.broker.submit_market_order("w", "AAPL", "buy", 1)
    assert world.broker.wait_for_final("w", 0).status == "submitted"
    start = time.monotonic()
    state = world.broker.wait_for_final("w", 0.2)
    assert state.status == "submitted" and not state.is_final
    assert time.monotonic() - start >= 0.15  # it waited (a lower bound holds on a busy machine)
    world.advance()
    assert world.broker.wait_for_final("w", 5).status == "filled"
    with pytest.raises(NotFound):
        world.broker.wait_for_final("unknown", 0)


def test_cancel(world: World) -> None:
    world.broker.submit_market_order("c", "AAPL", "buy", 4)
    canceled = world.broker.cancel("c")
    assert canceled is not None and canceled.status == "canceled" and canceled.is_final
    world.advance()
    assert world.broker.get_order("c").status == "canceled"  # type: ignore[union-attr]
    assert world.broker.position("AAPL") == 0 and world.broker.account_cash() == Decimal("100000")
    world.broker.submit_market_order("f", "AAPL", "buy", 1)
    world.advance()
    assert world.broker.cancel("f").status == "filled"  # type: ignore[union-attr]
    assert world.broker.cancel("unknown") is None


def test_an_order_whose_bar_is_already_stored_fills_at_once(tmp_path: Path, cal: MarketCalendar) -> None:
    # Replaying a stored day: the decision minute's bar is already there.
    with MarketStore(tmp_path / "stocks.db", minute_filter=cal.is_session_minute) as store, \
            SimBookStore(tmp_path / "book.db") as book:
        SimMarket(cal, store).ensure_history("AAPL", 1, before=utc(2024, 6, 4, 21, 0))
        clock = ManualClock(utc(2024, 6, 4, 15, 0, 2))
        state = SimBroker(book, store, cal, clock.now).submit_market_order("r", "AAPL", "buy", 1)
        assert state.status == "filled"
        assert state.filled_avg_price == Decimal(str(store.bars_between(
            "AAPL", ep(2024, 6, 4, 15, 0), ep(2024, 6, 4, 15, 0))[0].open))


def test_bad_slippage_is_refused(world: World) -> None:
    for bad in (-1.0, float("nan"), 10_000.0):
        with pytest.raises(ValueError, match="slippage"):
            SimBroker(world.book, world.store, world.cal, world.clock.now, slippage_bps=bad)
