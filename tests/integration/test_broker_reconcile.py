"""Broker-side reconciliation: fills the journal lost in a power cut are booked from the broker, once.

The power cut is simulated the way it hits the disk: real minutes are traded, then system.db is
put back to a consistent copy taken minutes earlier (the commits after it lost), while the broker
keeps every order it received. The engine restarts on that file and must book every fill of ours
exactly once, adopt nothing it did not place (an order typed in by hand, an order of another
installation), and say where the broker's positions and the cards' shares differ. Against the
SimBroker's persisted book and against the fake Alpaca through the real alpaca-py TradingClient.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.minute.order_ids import INSTALLATION_ID_KEY, ClientOrderIds
from app.engine.minute.reconcile import RECONCILED_KEY
from app.engine.host.wiring import SIM_BOOK_FILE
from app.storage.system_store import SystemStore
from app.storage.timefmt import parse_utc_text
from tests.engine.crash_child import FLIPPER_SOURCE, SimRig, write_algorithm
from tests.engine.netting_helpers import expected_bookings
from tests.engine.test_crash_safety import broker_fills

T0 = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)  # a Tuesday, mid-session
OTHER_INSTALLATION = "0123456789abcdef"


def minute(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


@pytest.fixture
def algos(tmp_path: Path) -> Path:
    return write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)


def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite file: what the disk still held when the power went."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
    source.close()
    target.close()


def put_back(copy: Path, system_db: Path) -> None:
    """Replace system.db (and its WAL) by the older copy: every commit after the copy is lost."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{system_db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, system_db)


def booked(system_db: Path) -> dict[str, tuple]:
    """Transactions by client order id: (card, side, shares, price); fails on a doubled id."""
    with SystemStore(system_db) as store:
        txs = store.all_transactions()
    counts = Counter(tx.client_order_id for tx in txs)
    assert [c for c, n in counts.items() if n > 1] == []
    return {tx.client_order_id: (tx.algorithm_id, tx.type, tx.shares, Decimal(str(tx.price))) for tx in txs}


# --- the id scheme ------------------------------------------------------------------------------

def test_client_order_ids_carry_card_minute_side_and_this_installation_only(tmp_path):
    with SystemStore(tmp_path / "system.db") as store:
        ids = ClientOrderIds.for_store(store)
        assert ClientOrderIds.for_store(store).installation_id == ids.installation_id  # made once
        coid = ids.make(123456, datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=-5))), "sell")
        assert coid == f"at2-{ids.installation_id}-123456-20261201T1530-sell" and len(coid) <= 128
        ident = ids.parse(coid)
        assert (ident.card, ident.minute, ident.side, ident.legacy) == \
            (123456, datetime(2026, 12, 1, 15, 30, tzinfo=timezone.utc), "sell", False)
        other = ClientOrderIds(OTHER_INSTALLATION)
        mine = ids.installation_id
        for foreign in (other.make(1, T0, "buy"), "my-own-order", "", f"at2-{mine}-0-20240604T1500-buy",
                        coid.replace("-sell", "-short"), coid + "x", f"at{mine[:6]}-1-20240604T1500-buy"):
            assert ids.parse(foreign) is None, foreign
        assert ids.legacy(1, T0, "buy") is None  # this system.db never used the old scheme
    with SystemStore(tmp_path / "other.db") as store:  # a new system.db is a new installation
        assert ClientOrderIds.for_store(store).installation_id != ids.installation_id


def test_old_format_ids_of_this_journal_stay_ours(tmp_path):
    with SystemStore(tmp_path / "system.db") as store:
        store.set_config("journal_id", "a1b2c3")  # a system.db from before the at2 scheme
        ids = ClientOrderIds.for_store(store)
        assert store.get_config(INSTALLATION_ID_KEY) == ids.installation_id
    old = "ata1b2c3-7-20240604T1501-buy"
    assert ids.legacy(7, minute(1), "buy") == old
    ident = ids.parse(old)
    assert (ident.card, ident.minute, ident.side, ident.legacy) == (7, minute(1), "buy", True)
    assert ids.parse("atffffff-7-20240604T1501-buy") is None  # another database's old id


def test_an_upgraded_journal_never_resends_a_decision_it_sent_under_its_old_id(tmp_path, algos):
    rig = SimRig(tmp_path / "data", minute(1), algorithm_dirs=(algos,))
    try:
        card = rig.add("AAPL", "flipper", 5_000)
        rig.system.set_config("journal_id", "a1b2c3")
        rig.system.journal_order("ata1b2c3-%d-20240604T1501-buy" % card, card, "AAPL", "buy", 3,
                                 "2024-06-04T15:01:00Z")
        rig.close()
        rig = SimRig(tmp_path / "data", minute(1), algorithm_dirs=(algos,))
        _, problem = rig.parts.journal.place(card, "AAPL", "buy", 3, minute(1))
        assert problem == "this decision was already sent"
        assert len(rig.system.orders_for(card)) == 1
    finally:
        rig.close()


# --- power cut, SimBroker -----------------------------------------------------------------------

def test_sim_power_cut_books_every_lost_fill_once_and_adopts_nothing_foreign(tmp_path, algos):
    data = tmp_path / "data"
    rig = SimRig(data, minute(0), algorithm_dirs=(algos,))
    system_db = rig.system.path
    book_db = rig.parts.paths.root / SIM_BOOK_FILE
    try:
        a = rig.add("AAPL", "flipper", 5_000)
        b = rig.add("MSFT", "flipper", 5_000)
        c = rig.add("AAPL", "flipper", 3_000, shares=4)
        rig.system.set_config("journal_id", "a1b2c3")  # this file also placed orders under the old scheme
        for i in range(1, 4):
            rig.step(minute(i))
        copy_db(system_db, tmp_path / "before.db")
        kept = booked(system_db)
        assert kept  # fills booked before the copy survive as they were
        open_at_copy = {o.client_order_id for o in rig.system.open_orders()}
        assert len(open_at_copy) == 3
        for i in range(4, 9):
            rig.step(minute(i))
            if i == 5:
                broker = rig.parts.broker
                broker.submit_market_order("my-manual-order-1", "AAPL", "buy", 2)  # typed in by hand
                broker.submit_market_order(ClientOrderIds(OTHER_INSTALLATION).make(a, minute(5), "buy"),
                                           "AAPL", "buy", 3)  # another kiosk on this account
                broker.submit_market_order(f"ata1b2c3-{b}-{minute(5):%Y%m%dT%H%M}-buy", "MSFT", "buy", 1)
        before_cut = booked(system_db)
        open_at_cut = [o.client_order_id for o in rig.system.open_orders()]
        assert len(open_at_cut) == 3  # the last minute's orders wait for their fill bar
    finally:
        rig.close()

    put_back(tmp_path / "before.db", system_db)
    assert booked(system_db) == kept
    rig = SimRig(data, minute(8) + timedelta(seconds=30), algorithm_dirs=(algos,))
    try:
        rig.start()
        result = rig.reconciled
        ids = rig.parts.journal.ids  # this installation's, old scheme included
        fills = broker_fills(book_db)
        positions = fills.pop("__positions__")
        fills.pop("__open__")
        ours = expected_bookings(ids, fills)  # a and c trade AAPL: their orders are netted
        assert any(ids.is_net(coid) for coid in fills)
        after = booked(system_db)
        # Every fill of ours at the broker is booked once, with the broker's side, quantity and price
        # (a card's share of a netted order: its share, at the netted order's price).
        assert set(after) == set(ours)
        for coid, (symbol, side, qty, price) in ours.items():
            card, t_side, t_qty, t_price = after[coid]
            assert (rig.system.get_instance(card).ticker, t_side, t_qty) == (symbol, side, qty)
            assert t_price == price
        assert set(before_cut) < set(after)  # incl. the old-format order the journal never had
        assert f"ata1b2c3-{b}-{minute(5):%Y%m%dT%H%M}-buy" in after
        # Nothing foreign was adopted: neither a transaction nor a journal row.
        foreign = [coid for coid in fills if not ids.parse(coid) and not ids.is_net(coid)]
        assert len(foreign) == 2
        for coid in foreign:
            assert coid not in after and rig.system.get_order(coid) is None
        # The rows the copy still had open are settled by the journal's own pass; every fill whose
        # row was lost is booked from the broker's list and announced once, on its card.
        assert len(result.fills) == len(after) - len(kept)
        from_broker = set(after) - set(kept) - open_at_copy
        booked_notices = [n for n in result.notices if n.message.startswith("booked a ")]
        assert len(booked_notices) == len(from_broker) == 13
        assert {n.instance_id for n in booked_notices} == {a, b, c}
        # The orders still open at the cut are journaled again and followed.
        assert result.adopted_open == 3
        assert sorted(o.client_order_id for o in rig.system.open_orders()) == sorted(open_at_cut)
        # The foreign shares show as a mismatch on AAPL only; MSFT adds up (incl. the old-format buy).
        (mismatch,) = [n for n in result.notices if n.kind == "error"]
        cards = rig.parts.cycle.holdings(rig.system.all_instances())
        aapl_cards = cards[a].shares + cards[c].shares
        assert positions.get("AAPL", 0) == aapl_cards + 5
        assert mismatch.message.startswith(f"AAPL: the broker holds {aapl_cards + 5} shares but the cards "
                                           f"account for {aapl_cards}")
        assert positions.get("MSFT", 0) == cards[b].shares
        assert parse_utc_text(rig.system.get_config(RECONCILED_KEY)) == minute(8)

        # The next minute fills the adopted open orders through the journal, once.
        step = rig.step(minute(9))
        assert sorted(f.client_order_id for f in step.fills) == sorted(open_at_cut)
        rig.close()

        # A second start finds nothing more to book and lists from the advanced point.
        rig = SimRig(data, minute(9) + timedelta(seconds=30), algorithm_dirs=(algos,))
        again = booked(system_db)
        assert rig.start() == []
        assert [n for n in rig.reconciled.notices if n.kind != "error"] == []
        assert booked(system_db) == again
        assert rig.reconciled.since >= minute(8) - timedelta(minutes=5)
    finally:
        rig.close()


# --- power cut, Alpaca (the fake, through the real alpaca-py TradingClient) ---------------------

class PaperEngine:
    """A paper engine on a ManualClock against the fake Alpaca, stepped like the orchestrator does."""

    SYMBOLS = ("AAPL", "MSFT")

    def __init__(self, fake, data: Path, algos: Path, clock) -> None:
        from app.engine.alpaca.broker import AlpacaBroker
        from app.engine.host.wiring import EngineOptions, EngineParts
        from app.engine.host.service import EngineService
        from app.engine.system.settings import Settings

        self.fake = fake
        self.clock = clock
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, data_root=data,
                            trading_url=fake.origin, data_url=fake.origin, stream_url=fake.stream_url,
                            algorithm_dirs=(algos,))
        broker = AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)
        self.parts = EngineParts.build(settings, clock=clock, broker=broker,
                                       options=EngineOptions(fill_wait_s=1.0))
        self.service = EngineService(self.parts)

    def step(self, at: datetime):
        self.clock.set(at + timedelta(seconds=2))
        self.parts.feed.set_symbols(list(self.SYMBOLS))
        self.parts.feed.poll(self.clock.now())
        for symbol in self.SYMBOLS:  # the fake fills at the price the cards last saw
            self.fake.set_price(symbol, str(self.parts.market.latest_bar(symbol).close))
        return self.parts.cycle.run_minute(at)

    def close(self) -> None:
        self.parts.close()


def fake_with_bars(tmp_path: Path, cal, fake):
    """Give the fake five sessions of sim bars before 2024-06-04 and that day's, for both symbols."""
    from datetime import date

    from app.engine.sim.market import SimMarket
    from app.storage.market_store import MarketStore

    scratch = MarketStore(tmp_path / "scratch.db")
    sim = SimMarket(cal, scratch, seed=5)
    days = [*cal.sessions_between(date(2024, 5, 28), date(2024, 6, 3)), date(2024, 6, 4)]
    for symbol in PaperEngine.SYMBOLS:
        fake.add_asset(symbol)
        fake.add_bars(symbol, [tuple(b) for d in days for b in sim.session_bars(symbol, d)])
    scratch.close()


def fake_fills(fake) -> dict[str, tuple]:
    """Orders the fake ended with shares filled: client id -> (symbol, side, filled qty, avg price)."""
    return {o["client_order_id"]: (o["symbol"], o["side"], int(o["filled_qty"]), Decimal(o["filled_avg_price"]))
            for o in fake.orders() if int(o["filled_qty"]) > 0 and o["status"] in ("filled", "canceled", "expired")}


def test_alpaca_power_cut_books_every_lost_fill_once_and_adopts_nothing_foreign(tmp_path, algos):
    from app.engine.marketdata.clock import ManualClock
    from app.engine.marketdata.calendar import MarketCalendar
    from tests.fakes.alpaca_server import FakeAlpaca, wait_until
    from tests.fakes.fixtures import trading_client
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    clock = ManualClock(minute(0) + timedelta(seconds=2))
    with FakeAlpaca(cash=100_000, fill_delay=0.05) as fake:
        fake_with_bars(tmp_path, MarketCalendar(), fake)
        fake.set_now(clock.now)
        data = tmp_path / "data"
        engine = PaperEngine(fake, data, algos, clock)
        system_db = engine.parts.system.path
        try:
            a = engine.service.create_instance("AAPL", "flipper", "5000")
            b = engine.service.create_instance("MSFT", "flipper", "5000")
            c = engine.service.create_instance("AAPL", "flipper", "3000", {"shares": "4"})
            for i in range(1, 4):
                engine.step(minute(i))
            copy_db(system_db, tmp_path / "before.db")
            kept = booked(system_db)
            assert len(kept) == 9  # Alpaca fills within the minute
            hand = trading_client(fake)
            for i in range(4, 8):
                engine.step(minute(i))
                if i == 5:
                    for coid, qty in (("my-manual-order-1", 2),
                                      (ClientOrderIds(OTHER_INSTALLATION).make(a, minute(5), "buy"), 3)):
                        hand.submit_order(MarketOrderRequest(symbol="AAPL", qty=qty, side=OrderSide.BUY,
                                                             time_in_force=TimeInForce.DAY, client_order_id=coid))
                    assert wait_until(lambda: all(fake.order(c)["status"] == "filled" for c in (
                        "my-manual-order-1", ClientOrderIds(OTHER_INSTALLATION).make(a, minute(5), "buy"))), 5)
            fake.fill_delay = None  # the last minute's orders stay open at the broker through the cut
            last = engine.step(minute(8))
            assert last.orders == 3 and last.fills == []
            open_at_cut = sorted(o.client_order_id for o in engine.parts.system.open_orders())
            assert len(open_at_cut) == 3
        finally:
            engine.close()

        put_back(tmp_path / "before.db", system_db)
        clock.set(minute(8) + timedelta(seconds=40))
        engine = PaperEngine(fake, data, algos, clock)
        try:
            result = engine.parts.reconcile_at_start()
            ids = engine.parts.journal.ids
            fills = fake_fills(fake)
            ours = expected_bookings(ids, fills)  # a and c trade AAPL: their orders are netted
            after = booked(system_db)
            assert set(after) == set(ours) and len(ours) == 9 + 4 * 3
            for coid, (symbol, side, qty, price) in ours.items():
                card, t_side, t_qty, t_price = after[coid]
                assert (engine.parts.system.get_instance(card).ticker, t_side, t_qty, t_price) == \
                    (symbol, side, qty, price)
            foreign = [coid for coid in fills if not ids.parse(coid) and not ids.is_net(coid)]
            assert len(foreign) == 2
            for coid in foreign:
                assert coid not in after and engine.parts.system.get_order(coid) is None
            booked_notices = [n for n in result.notices if n.message.startswith("booked a ")]
            assert len(booked_notices) == len(result.fills) == 12
            assert result.adopted_open == 3
            assert sorted(o.client_order_id for o in engine.parts.system.open_orders()) == open_at_cut
            cards = engine.parts.cycle.holdings(engine.parts.system.all_instances())
            (mismatch,) = [n for n in result.notices if n.kind == "error"]
            assert fake.position_qty("AAPL") == cards[a].shares + cards[c].shares + 5
            assert mismatch.message.startswith(f"AAPL: the broker holds {fake.position_qty('AAPL')} shares")
            assert fake.position_qty("MSFT") == cards[b].shares

            # The adopted open orders fill later and are booked once, by the journal.
            for order in fake.orders():
                if order["status"] not in ("filled", "canceled", "expired", "rejected", "replaced"):
                    fake.fill_order(order["client_order_id"])
            settled = engine.parts.journal.settle(0)
            assert sorted(f.client_order_id for f in settled) == open_at_cut
        finally:
            engine.close()

        engine = PaperEngine(fake, data, algos, clock)
        try:
            again = booked(system_db)
            result = engine.parts.reconcile_at_start()
            assert result.fills == [] and [n.kind for n in result.notices] == ["error"]
            assert booked(system_db) == again and len(again) == 9 + 4 * 3 + 3
        finally:
            engine.close()


# --- listing the broker's orders: pages --------------------------------------------------------

def submit_many(fake, n: int, prefix: str, when) -> list[str]:
    """``n`` open one-share buys through the real client, ``when(i)`` giving the fake's clock for each."""
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest
    from tests.fakes.fixtures import trading_client

    client = trading_client(fake)
    coids = []
    for i in range(n):
        fake.set_now(when(i))
        coid = f"{prefix}-{i}"
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                               time_in_force=TimeInForce.DAY, client_order_id=coid))
        coids.append(coid)
    return coids


def alpaca_broker(fake):
    from app.engine.alpaca.broker import AlpacaBroker
    from app.engine.system.settings import Settings

    settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, trading_url=fake.origin)
    return AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)


def test_orders_since_pages_through_shared_timestamps_without_skipping_or_repeating():
    from tests.fakes.alpaca_server import FakeAlpaca

    with FakeAlpaca(fill_delay=None) as fake:
        fake.add_asset("AAPL")
        # 23 orders in 5 instants (ties of 5, 5, 5, 5, 3); pages of 7 cut through every tie.
        coids = submit_many(fake, 23, "tie", lambda i: T0 + timedelta(seconds=i // 5))
        broker = alpaca_broker(fake)
        listed = broker.orders_since(T0, page_limit=7)
        assert [s.client_order_id for s in listed] and sorted(s.client_order_id for s in listed) == sorted(coids)
        assert [s.submitted_at for s in listed] == sorted(s.submitted_at for s in listed)
        # `since` is inclusive, and each page asked for the oldest orders first.
        assert {s.client_order_id for s in broker.orders_since(T0 + timedelta(seconds=4), page_limit=7)} == \
            set(coids[20:])
        requests = fake.requests("/v2/orders", method="GET")
        assert requests and all(r.param("direction") == "asc" and r.param("status") == "all" for r in requests)


def test_orders_since_reads_past_alpacas_500_per_page():
    from tests.fakes.alpaca_server import FakeAlpaca

    with FakeAlpaca(fill_delay=None, cash=10_000_000) as fake:
        fake.add_asset("AAPL")
        coids = submit_many(fake, 520, "many", lambda i: T0 + timedelta(milliseconds=10 * i))
        fake.clear_log()
        listed = alpaca_broker(fake).orders_since(T0 - timedelta(seconds=1))
        assert sorted(s.client_order_id for s in listed) == sorted(coids)
        pages = fake.requests("/v2/orders", method="GET")
        assert len(pages) == 2 and pages[0].param("limit") == "500"


def test_orders_since_refuses_a_page_that_cannot_advance():
    from app.engine.brokers.protocol import BrokerError
    from tests.fakes.alpaca_server import FakeAlpaca

    with FakeAlpaca(fill_delay=None) as fake:
        fake.add_asset("AAPL")
        submit_many(fake, 8, "same", lambda i: T0)
        with pytest.raises(BrokerError, match="more than 5 orders share the submission time"):
            alpaca_broker(fake).orders_since(T0, page_limit=5)


# --- stop means stopped ------------------------------------------------------------------------

def test_stop_liquidate_cancels_an_open_buy_before_selling_what_the_card_holds(tmp_path, algos):
    """Alpaca keeps the card's buy open; ``stop --liquidate`` must not leave it to fill after the stop."""
    from app.engine.marketdata.clock import ManualClock
    from app.engine.marketdata.calendar import MarketCalendar
    from tests.fakes.alpaca_server import FakeAlpaca

    clock = ManualClock(minute(0) + timedelta(seconds=2))
    with FakeAlpaca(fill_delay=0.05) as fake:
        fake_with_bars(tmp_path, MarketCalendar(), fake)
        fake.set_now(clock.now)
        engine = PaperEngine(fake, tmp_path / "data", algos, clock)
        try:
            card = engine.service.create_instance("AAPL", "flipper", "5000", {"shares": "5"})
            other = engine.service.create_instance("MSFT", "flipper", "5000", {"shares": "5"})
            engine.step(minute(1))  # both buy 5, filled
            engine.step(minute(2))  # both sell 5, filled
            fake.fill_delay = None  # from now on Alpaca keeps orders open
            engine.step(minute(3))  # both buy 5 again: open at the broker
            (buy,) = [o for o in engine.parts.system.open_orders() if o.algorithm_id == card]
            fake.fill_order(buy.client_order_id, qty=2)  # part of it filled meanwhile
            assert engine.parts.cycle.holding(card).shares == 0  # nothing booked yet: still open

            result = engine.service.stop_instance(card, liquidate=True)
            assert result.message.endswith("; canceled its open buy of 5 AAPL after 2 filled; selling 2 AAPL at market")
            assert fake.order(buy.client_order_id)["status"] == "canceled"
            assert engine.parts.system.get_order(buy.client_order_id).status == "partial"
            (sell,) = [o for o in engine.parts.system.open_orders() if o.algorithm_id == card]
            assert (sell.side, sell.shares) == ("sell", 2)
            fake.fill_order(sell.client_order_id)
            engine.step(minute(4))
            assert engine.parts.cycle.holding(card).shares == 0 and fake.position_qty("AAPL") == 0
            assert engine.parts.system.get_instance(card).status == "stopped"
            assert engine.parts.system.open_orders() == [o for o in engine.parts.system.open_orders()
                                                          if o.algorithm_id == other]

            # Plain stop: the open buy is canceled too, the shares it already has stay.
            (other_buy,) = engine.parts.system.open_orders()
            result = engine.service.stop_instance(other)
            assert result.message.endswith("; canceled its open buy of 5 MSFT")
            assert fake.order(other_buy.client_order_id)["status"] == "canceled"
            assert engine.parts.system.open_orders() == [] and fake.position_qty("MSFT") == 0
        finally:
            engine.close()


def test_stop_refuses_while_the_broker_will_not_close_the_open_buy(tmp_path, algos):
    from app.engine.marketdata.clock import ManualClock
    from app.engine.host.client import ServiceError
    from app.engine.marketdata.calendar import MarketCalendar
    from tests.fakes.alpaca_server import FakeAlpaca

    clock = ManualClock(minute(0) + timedelta(seconds=2))
    with FakeAlpaca(fill_delay=None) as fake:
        fake_with_bars(tmp_path, MarketCalendar(), fake)
        fake.set_now(clock.now)
        engine = PaperEngine(fake, tmp_path / "data", algos, clock)
        try:
            card = engine.service.create_instance("AAPL", "flipper", "5000", {"shares": "5"})
            engine.step(minute(1))
            (buy,) = engine.parts.system.open_orders()
            fake.faults.server_errors("/v2/orders/", status=503, times=50, method="DELETE")
            refused = "could not cancel the open buy of 5 AAPL: .*The card was not stopped; try again"
            with pytest.raises(ServiceError, match=refused):
                engine.service.stop_instance(card, liquidate=True)
            assert engine.parts.system.get_instance(card).status == "running"
            assert engine.parts.system.get_order(buy.client_order_id).status == "submitted"
        finally:
            engine.close()


def test_the_kiosk_says_at_start_what_it_booked_from_the_broker(tmp_path, algos, qtbot):
    """The orchestrator's start runs both passes and puts their notices on the wall."""
    from app.engine.marketdata.clock import SimClock
    from app.engine.host.thread import EngineHost
    from app.engine.host.wiring import EngineOptions

    data = tmp_path / "data"
    rig = SimRig(data, minute(0), algorithm_dirs=(algos,))
    try:
        card = rig.add("AAPL", "flipper", 5_000)
        rig.step(minute(1))
        copy_db(rig.system.path, tmp_path / "before.db")
        for i in range(2, 5):
            rig.step(minute(i))
        system_db = rig.system.path
    finally:
        rig.close()
    put_back(tmp_path / "before.db", system_db)

    host = EngineHost(rig.settings, SimClock(minute(4) + timedelta(seconds=30), speed=1.0),
                      options=EngineOptions(time_budget_s=5.0))
    notices = []
    host.signals.notice.connect(notices.append)
    host.start()
    try:
        qtbot.waitUntil(lambda: any(n.message.startswith("booked a ") for n in notices), timeout=10_000)
        announced = [n for n in notices if n.message.startswith("booked a ")]
        assert [n.instance_id for n in announced] == [card, card] and {n.kind for n in announced} == {"info"}
        assert "(its journal row was lost, e.g. in a power cut)" in announced[0].message
    finally:
        host.stop()


def test_cards_do_not_trade_until_the_broker_orders_could_be_compared(tmp_path, algos, qtbot):
    """A Pi that boots before its network: the listing fails at start, so nothing trades on a journal
    that may lack fills; the next minute it works, the lost fills are booked and trading starts."""
    from app.engine.brokers.protocol import BrokerUnavailable
    from app.engine.marketdata.clock import ManualClock
    from app.engine.host.wiring import EngineParts
    from app.engine.marketdata.calendar import MarketCalendar
    from app.engine.host.orchestrator import Orchestrator
    from app.engine.host.signals import EngineSignals
    from app.engine.system.data_folder import DataPaths, open_market_store
    from app.engine.sim.broker import SimBroker
    from app.storage.sim_book_store import SimBookStore

    data = tmp_path / "data"
    rig = SimRig(data, minute(0), algorithm_dirs=(algos,))
    try:
        card = rig.add("AAPL", "flipper", 5_000)
        rig.step(minute(1))
        copy_db(rig.system.path, tmp_path / "before.db")
        rig.step(minute(2))
        rig.step(minute(3))
        system_db, settings = rig.system.path, rig.settings
    finally:
        rig.close()
    put_back(tmp_path / "before.db", system_db)

    class NetworkNotUpYet(SimBroker):
        down = True

        def orders_since(self, after):
            if self.down:
                raise BrokerUnavailable("the broker did not answer within 10 s")
            return super().orders_since(after)

    clock = ManualClock(minute(3) + timedelta(seconds=30))
    made = []

    def parts_factory() -> EngineParts:
        calendar = MarketCalendar()
        paths = DataPaths.for_folder(settings.data_dir())
        market = open_market_store(paths, calendar)
        broker = NetworkNotUpYet(SimBookStore(paths.root / SIM_BOOK_FILE), market, calendar, clock.now)
        made.append(broker)
        return EngineParts.build(settings, clock=clock, broker=broker)

    signals = EngineSignals()
    notices = []
    signals.notice.connect(notices.append)
    orch = Orchestrator(settings, clock, signals, parts_factory=parts_factory)
    orch.start()
    try:
        assert orch.start_error is None and orch.broker_unchecked
        assert [n.kind for n in notices] == ["error"] and "no card trades until" in notices[0].message
        orders = len(orch.parts.system.orders_for(card))
        clock.set(minute(4) + timedelta(seconds=2))
        assert orch.run_cycle(minute(4)).orders == 0
        assert len(orch.parts.system.orders_for(card)) == orders  # nothing sent on a stale journal
        made[0].down = False
        clock.set(minute(5) + timedelta(seconds=2))
        assert orch.run_cycle(minute(5)).orders == 1
        assert not orch.broker_unchecked
        assert [n.instance_id for n in notices if n.message.startswith("booked a ")] == [card, card]
        txs = orch.parts.system.get_transactions(card, oldest_first=True)
        assert [t.type for t in txs] == ["buy", "sell", "buy"]  # minute 1 to 3, each once

        # Once a day the pass runs again, so the point a restart lists from follows the trading.
        point = orch.parts.system.get_config(RECONCILED_KEY)
        clock.set(minute(6) + timedelta(seconds=2))
        orch.run_cycle(minute(6))
        assert orch.parts.system.get_config(RECONCILED_KEY) == point  # same day: not again
        tomorrow = datetime(2024, 6, 5, 13, 31, tzinfo=timezone.utc)
        clock.set(tomorrow + timedelta(seconds=2))
        orch.run_cycle(tomorrow)
        assert parse_utc_text(orch.parts.system.get_config(RECONCILED_KEY)) == minute(6)
    finally:
        orch.stop()


def test_shares_an_open_order_already_moved_are_no_position_mismatch(tmp_path, algos):
    from app.engine.marketdata.clock import ManualClock
    from app.engine.marketdata.calendar import MarketCalendar
    from tests.fakes.alpaca_server import FakeAlpaca

    clock = ManualClock(minute(0) + timedelta(seconds=2))
    with FakeAlpaca(fill_delay=None) as fake:
        fake_with_bars(tmp_path, MarketCalendar(), fake)
        fake.set_now(clock.now)
        engine = PaperEngine(fake, tmp_path / "data", algos, clock)
        try:
            card = engine.service.create_instance("AAPL", "flipper", "5000", {"shares": "5"})
            engine.step(minute(1))
            (buy,) = engine.parts.system.open_orders()
            fake.fill_order(buy.client_order_id, qty=2)  # partially filled, still open
            result = engine.parts.reconcile_with_broker()
            assert result.checked and result.notices == [] and result.unbooked == {"AAPL": 2}
            assert engine.parts.cycle.holding(card).shares == 0 and fake.position_qty("AAPL") == 2
            fake.set_position("AAPL", 3, "100")  # one more share from somewhere else
            (mismatch,) = engine.parts.reconcile_with_broker().notices
            assert mismatch.message.startswith("AAPL: the broker holds 3 shares but the cards account for 0 "
                                               "(none; +2 filled of orders still open)")
        finally:
            engine.close()
