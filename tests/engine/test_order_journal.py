"""OrderJournal against the real SimBroker and real SQLite stores: journal first, exactly-once fills."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.brokers.protocol import BrokerUnavailable, OrderState
from app.engine.marketdata.clock import ManualClock
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.minute.journal import UNKNOWN_ORDER_GRACE, OrderJournal
from app.engine.sim.broker import SimBroker
from app.engine.sim.market import SimMarket
from app.storage.market_store import MarketStore
from app.storage.sim_book_store import SimBookStore
from app.storage.system_store import SystemStore
from app.storage.timefmt import to_epoch

T = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def cal() -> MarketCalendar:
    return MarketCalendar()


class SpyBroker(SimBroker):
    """The real SimBroker, noting what the journal held at each submission."""

    def __init__(self, *args, journal_store: SystemStore, **kwargs):
        super().__init__(*args, **kwargs)
        self.journal_store = journal_store
        self.seen_at_submit = []

    def submit_market_order(self, client_order_id, symbol, side, qty):
        self.seen_at_submit.append(self.journal_store.get_order(client_order_id))
        return super().submit_market_order(client_order_id, symbol, side, qty)


class TimeoutAfterAccept(SimBroker):
    """Accepts the order, then the answer is lost (Alpaca's 504 after accepting)."""

    def submit_market_order(self, client_order_id, symbol, side, qty):
        super().submit_market_order(client_order_id, symbol, side, qty)
        raise BrokerUnavailable("the broker did not answer within 10 s")


class World:
    """Stores, sim market and broker of one engine in a temporary folder."""

    def __init__(self, root: Path, cal: MarketCalendar, broker_cls=SpyBroker):
        self.root = root
        self.cal = cal
        self.clock = ManualClock(T + timedelta(seconds=2))
        self.market = MarketStore(root / "stocks.db", minute_filter=cal.is_session_minute)
        self.sim = SimMarket(cal, self.market, seed=3)
        self.book = SimBookStore(root / "sim_book.db")
        self.system = SystemStore(root / "system.db", now=self.clock.now)
        extra = {"journal_store": self.system} if broker_cls is SpyBroker else {}
        self.broker = broker_cls(self.book, self.market, cal, self.clock.now, **extra)
        self.sim.ensure_history("AAPL", 1, before=self.clock.now())
        self.publish()
        self.card = self.system.create_instance("AAPL", "flipper", 10_000.0)
        self.journal = OrderJournal(self.system, self.broker, self.clock.now)

    def publish(self) -> None:
        self.sim.publish_until(["AAPL"], self.clock.now())

    def next_minute(self) -> None:
        """Move to the next minute + 2 s and publish the bar that just completed."""
        self.clock.advance(timedelta(minutes=1))
        self.publish()

    def restart(self) -> OrderJournal:
        """A new process: fresh connections to the same files, a new journal."""
        self.system.close()
        self.book.close()
        self.book = SimBookStore(self.root / "sim_book.db")
        self.system = SystemStore(self.root / "system.db", now=self.clock.now)
        self.broker = SimBroker(self.book, self.market, self.cal, self.clock.now)
        self.journal = OrderJournal(self.system, self.broker, self.clock.now)
        return self.journal

    def bar_open(self, minute: datetime) -> Decimal:
        (bar,) = self.market.bars_between("AAPL", to_epoch(minute), to_epoch(minute))
        return Decimal(str(bar.open))

    def close(self) -> None:
        for store in (self.system, self.book, self.market):
            store.close()


@pytest.fixture
def world(tmp_path, cal):
    w = World(tmp_path, cal)
    yield w
    w.close()


def test_decision_is_journaled_before_it_is_submitted(world):
    order, problem = world.journal.place(world.card, "AAPL", "buy", 10, T)
    assert problem is None
    (seen,) = world.broker.seen_at_submit
    assert seen is not None and seen.status == "pending"
    assert (seen.client_order_id, seen.shares, seen.side) == (order.client_order_id, 10, "buy")
    assert order.status == "submitted" and order.broker_order_id == "sim-000001"
    assert order.client_order_id.endswith(f"-{world.card}-20240604T1500-buy")


def test_same_decision_is_never_sent_twice(world):
    first, problem = world.journal.place(world.card, "AAPL", "buy", 10, T)
    assert problem is None
    # The same (instance, minute, side) again, even seconds later within the minute.
    again, problem = world.journal.place(world.card, "AAPL", "buy", 10, T + timedelta(seconds=30))
    assert problem == "this decision was already sent"
    assert again.client_order_id == first.client_order_id
    assert len(world.broker.seen_at_submit) == 1
    assert len(world.book.open_orders()) == 1
    # A different side in the same minute is a different decision.
    _, problem = world.journal.place(world.card, "AAPL", "sell", 1, T)
    # Not "already sent": refused before the broker, as the open buy would make it a wash trade.
    assert problem is not None and "wash trade" in problem
    assert world.journal.client_order_id(world.card, T, "sell") != first.client_order_id
    assert len(world.broker.seen_at_submit) == 1


def test_fill_is_recorded_once_at_the_decision_bar_open(world):
    order, _ = world.journal.place(world.card, "AAPL", "buy", 10, T)
    assert world.journal.settle(0) == []  # bar T not complete yet
    world.next_minute()
    (fill,) = world.journal.settle(0)
    assert (fill.instance_id, fill.side, fill.shares) == (world.card, "buy", 10)
    assert fill.price == world.bar_open(T)
    assert world.journal.settle(0) == [] and world.journal.apply(world.broker.get_order(order.client_order_id)) is None
    (tx,) = world.system.get_transactions(world.card)
    assert (tx.shares, tx.timestamp, tx.client_order_id) == (10, "2024-06-04T15:00:00Z", order.client_order_id)
    row = world.system.get_order(order.client_order_id)
    assert (row.status, row.filled_qty, row.filled_at) == ("filled", 10, "2024-06-04T15:00:00Z")


def test_reconcile_at_start_records_a_fill_the_crash_left_unrecorded(world):
    # Crash right after the broker accepted: the row is still 'pending', nothing recorded.
    coid = world.journal.client_order_id(world.card, T, "buy")
    assert world.system.journal_order(coid, world.card, "AAPL", "buy", 7, "2024-06-04T15:00:02Z")
    world.broker.submit_market_order(coid, "AAPL", "buy", 7)
    world.next_minute()  # the order fills in the broker's book while the engine is down
    journal = world.restart()
    (fill,) = journal.reconcile_at_start()
    assert (fill.client_order_id, fill.shares, fill.price) == (coid, 7, world.bar_open(T))
    assert journal.reconcile_at_start() == [] and journal.settle(0) == []
    assert OrderJournal(world.system, world.broker, world.clock.now).reconcile_at_start() == []
    (tx,) = world.system.get_transactions(world.card)
    assert tx.client_order_id == coid and tx.shares == 7
    row = world.system.get_order(coid)
    assert (row.status, row.broker_order_id) == ("filled", "sim-000001")


def test_reconcile_at_start_keeps_an_unfilled_order_open_then_settles_it(world):
    order, _ = world.journal.place(world.card, "AAPL", "buy", 4, T)
    journal = world.restart()
    assert journal.reconcile_at_start() == []
    assert world.system.get_order(order.client_order_id).status == "submitted"
    world.next_minute()
    assert [f.shares for f in journal.settle(0)] == [4]


def test_reconcile_at_start_fails_an_order_the_broker_never_received(world):
    coid = world.journal.client_order_id(world.card, T, "buy")
    world.system.journal_order(coid, world.card, "AAPL", "buy", 3, "2024-06-04T15:00:02Z")  # crash before submit
    journal = world.restart()
    assert journal.reconcile_at_start() == []
    row = world.system.get_order(coid)
    assert (row.status, row.error) == ("failed", "not found at the broker after restart")
    assert world.system.get_transactions(world.card) == []
    assert world.book.get_order(coid) is None


def test_settle_waits_a_grace_period_before_failing_an_unknown_order(world):
    coid = world.journal.client_order_id(world.card, T, "sell")
    world.system.journal_order(coid, world.card, "AAPL", "sell", 3, "2024-06-04T15:00:02Z")
    world.clock.advance(UNKNOWN_ORDER_GRACE - timedelta(seconds=1))
    world.journal.settle(0)
    assert world.system.get_order(coid).status == "pending"
    world.clock.advance(timedelta(seconds=1))
    world.journal.settle(0)
    assert world.system.get_order(coid).status == "failed"


def test_answer_lost_after_accept_is_found_by_client_id_not_resent(tmp_path, cal):
    w = World(tmp_path, cal, broker_cls=TimeoutAfterAccept)
    try:
        order, problem = w.journal.place(w.card, "AAPL", "buy", 5, T)
        assert problem.startswith("broker did not confirm the order yet")
        assert order.status == "pending"
        _, problem = w.journal.place(w.card, "AAPL", "buy", 5, T)
        assert problem == "this decision was already sent"
        assert len(w.book.open_orders()) == 1
        w.next_minute()
        (fill,) = w.journal.settle(0)
        assert fill.shares == 5
        assert w.system.get_order(order.client_order_id).broker_order_id == "sim-000001"
        assert len(w.system.get_transactions(w.card)) == 1
    finally:
        w.close()


@pytest.mark.parametrize("broker_status", ["canceled", "partial"])
def test_partial_fill_records_the_filled_quantity_only(world, broker_status):
    coid = world.journal.client_order_id(world.card, T, "buy")
    world.system.journal_order(coid, world.card, "AAPL", "buy", 10, "2024-06-04T15:00:02Z")
    state = OrderState(coid, "alp-1", "AAPL", "buy", 10, broker_status, filled_qty=4,
                       filled_avg_price=Decimal("101.25"), filled_at=T + timedelta(seconds=20))
    fill = world.journal.apply(state)
    assert (fill.shares, fill.price) == (4, Decimal("101.25"))
    assert world.journal.apply(state) is None
    (tx,) = world.system.get_transactions(world.card)
    assert (tx.shares, tx.price, tx.timestamp) == (4, 101.25, "2024-06-04T15:00:20Z")
    row = world.system.get_order(coid)
    assert (row.status, row.filled_qty, row.filled_avg_price) == ("partial", 4, 101.25)


def test_rejected_order_is_closed_with_its_reason_and_records_nothing(world):
    order, problem = world.journal.place(world.card, "AAPL", "buy", 10**6, T)  # far beyond the book's cash
    assert problem.startswith("broker rejected the order: buying 1000000 AAPL costs about")
    assert (order.status, order.error is not None) == ("rejected", True)
    assert world.journal.open_orders() == [] and world.system.get_transactions(world.card) == []


def test_canceled_order_without_fill_is_closed(world):
    order, _ = world.journal.place(world.card, "AAPL", "buy", 2, T)
    world.broker.cancel(order.client_order_id)
    world.next_minute()
    assert world.journal.settle(0) == []
    assert world.system.get_order(order.client_order_id).status == "canceled"
    assert world.system.get_transactions(world.card) == []


def test_reserved_cash_and_shares_of_open_orders(world):
    world.journal.place(world.card, "AAPL", "buy", 3, T)
    assert world.journal.reserved(world.card, Decimal("10")) == (Decimal("30"), 0)
    assert world.journal.reserved(world.card + 1, Decimal("10")) == (Decimal(0), 0)


def test_client_order_ids_differ_between_databases(tmp_path, cal):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = World(tmp_path / "a", cal), World(tmp_path / "b", cal)
    try:
        ida = a.journal.client_order_id(1, T, "buy")
        idb = b.journal.client_order_id(1, T, "buy")
        assert ida != idb and len(ida) <= 128
        # The prefix survives a restart: the same decision keeps the same id.
        assert a.restart().client_order_id(1, T, "buy") == ida
    finally:
        a.close()
        b.close()


def test_fill_final_at_submission_is_recorded_at_once_and_reported_by_the_next_settle(world):
    # Replaying history: the decision bar is already stored, so the broker fills on submission.
    world.sim.publish_until(["AAPL"], T + timedelta(minutes=5))
    order, problem = world.journal.place(world.card, "AAPL", "buy", 2, T)
    assert problem is None and order.status == "filled"
    assert len(world.system.get_transactions(world.card)) == 1
    (fill,) = world.journal.settle(0)
    assert (fill.client_order_id, fill.shares, fill.price) == (order.client_order_id, 2, world.bar_open(T))
    assert world.journal.settle(0) == []



def test_broker_rejection_after_acceptance_reaches_the_card(fake_alpaca, tmp_path):
    """Alpaca accepts an order, then rejects it: the card gets the reason, nothing is recorded."""
    from datetime import datetime, timezone

    from app.engine.alpaca.broker import AlpacaBroker
    from app.engine.minute.journal import OrderJournal
    from app.engine.system.settings import Settings
    from app.storage.system_store import SystemStore

    settings = Settings(api_key=fake_alpaca.key, secret=fake_alpaca.secret, trading_url=fake_alpaca.origin,
                        data_url=fake_alpaca.origin, data_root=tmp_path)
    broker = AlpacaBroker.from_settings(settings, timeout_s=2, retry_wait_s=0.01)
    now = datetime(2024, 6, 3, 15, 0, tzinfo=timezone.utc)
    store = SystemStore(tmp_path / "system.db", now=lambda: now)
    card = store.create_instance("AAPL", "sma_crossover", 10_000)
    journal = OrderJournal(store, broker, lambda: now)
    fake_alpaca.faults.reject(symbol="AAPL")
    order, problem = journal.place(card, "AAPL", "buy", 5, now)
    assert problem is None
    assert journal.settle(wait_s=3.0) == []
    closed = journal.drain_unfilled()
    assert len(closed) == 1 and closed[0][0] == card
    assert closed[0][1].startswith("broker rejected the buy of 5 AAPL")
    assert journal.drain_unfilled() == []
    assert store.get_order(order.client_order_id).status == "rejected"
    assert store.get_transactions(card) == []
