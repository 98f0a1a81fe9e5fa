"""TradingCycle on the real SimBroker, SimMarket and stores, driven minute by minute on a ManualClock.

Each minute is stepped exactly as the orchestrator's ``run_cycle`` does it: wake at minute + 2 s,
publish the sim bars completed by then (SimFeed.poll), then ``run_minute``.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.host.client import ServiceError

from app.engine.portfolio.money import card_figures
from app.engine.minute.schedule import next_cycle_minute
from app.storage.timefmt import parse_utc_text, to_epoch, utc_text
from tests.engine.crash_child import FLIPPER_SOURCE, PEEKER_SOURCE, SimRig, coid_minute, write_algorithm

def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def algos(tmp_path: Path) -> Path:
    folder = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    return write_algorithm(folder, "peeker", PEEKER_SOURCE)


def make_rig(tmp_path: Path, algos: Path, start: datetime) -> SimRig:
    return SimRig(tmp_path / "data", start, algorithm_dirs=(algos,))


def assert_fills_match_bars(rig: SimRig) -> None:
    """Every transaction is at its decision minute, at the open of that minute's bar."""
    for tx in rig.system.all_transactions():
        minute = coid_minute(tx.client_order_id)
        assert tx.timestamp == utc_text(minute)
        bar = rig.market.bars_between(rig.system.get_instance(tx.algorithm_id).ticker,
                                      to_epoch(minute), to_epoch(minute))
        assert bar, f"no bar for {tx.client_order_id}"
        assert Decimal(str(tx.price)) == Decimal(str(bar[0].open))


def assert_cards_match_money_rules(rig: SimRig) -> None:
    cards = {c.instance_id: c for c in rig.service.cards()}
    assert cards
    for inst in rig.system.all_instances("running"):
        txs = rig.system.get_transactions(inst.id, oldest_first=True)
        price = Decimal(str(rig.market.latest_bar(inst.ticker).close))
        expected = card_figures(inst.initial_capital, txs, price)
        card = cards[inst.id]
        assert (card.shares, card.trade_count) == (expected.shares, expected.trade_count)
        assert (card.value, card.uninvested, card.pnl, card.pnl_pct) == \
            (expected.value, expected.uninvested, expected.pnl, expected.pnl_pct)
        assert card.price == price
        # The same rule written out: P&L = sell proceeds − buy costs + shares × last price.
        flow = sum((Decimal(str(t.price)) * t.shares * (1 if t.type == "sell" else -1) for t in txs), Decimal(0))
        assert card.pnl == flow + card.shares * price


def test_full_session_trades_on_the_right_minutes_and_pnl_follows_the_money_rules(tmp_path, algos):
    rig = make_rig(tmp_path, algos, utc(2024, 6, 4, 13, 29))
    try:
        flipper = rig.add("AAPL", "flipper", 10_000)
        holder = rig.add("MSFT", "buy_and_hold", 5_000)
        crossing = rig.add("NVDA", "sma_crossover", 10_000, fast=2, slow=3)
        peeker = rig.add("AAPL", "peeker", 1_000)
        minutes = rig.session_minutes(date(2024, 6, 4))
        assert len(minutes) == 390 and minutes[0] == utc(2024, 6, 4, 13, 30)

        placed_at: dict[datetime, set[str]] = {}
        for minute in minutes:
            result = rig.step(minute)
            assert not result.faults, result.faults
            by_id = {o.instance_id: o for o in result.outcomes}
            assert set(by_id) == {flipper, holder, crossing, peeker}
            # The flipper trades every minute: the fill of the minute before is already recorded.
            assert by_id[flipper].action in ("buy", "sell"), by_id[flipper]
            assert by_id[peeker].action == "hold"
            orders = {o.client_order_id for o in rig.system.open_orders()}
            placed_at[minute] = orders
            # Fills recorded now are exactly the orders decided one minute earlier.
            previous = placed_at.get(minute - timedelta(minutes=1), set())
            assert {f.client_order_id for f in result.fills} == previous
            assert all(coid_minute(c) == minute for c in orders)

        flips = rig.system.orders_for(flipper)
        assert len(flips) == 390
        assert [o.side for o in flips[:4]] == ["buy", "sell", "buy", "sell"]
        assert len(rig.system.orders_for(holder)) == 1
        assert rig.system.orders_for(crossing), "a 2/3 crossover trades within a session"

        # The last minute's orders fill at the open of the session's last bar, once it completes.
        rig.publish(utc(2024, 6, 4, 20, 0, 2))
        assert {f.client_order_id for f in rig.parts.journal.settle(0)} == placed_at[minutes[-1]]
        assert rig.system.open_orders() == []

        assert_fills_match_bars(rig)
        assert_cards_match_money_rules(rig)
        book = rig.parts.broker
        for symbol in ("AAPL", "MSFT", "NVDA"):
            held = sum(card_figures(i.initial_capital, rig.system.get_transactions(i.id), None).shares
                       for i in rig.system.all_instances() if i.ticker == symbol)
            assert book.position(symbol) == held
    finally:
        rig.close()


def test_order_decided_at_t_fills_at_open_of_bar_t_and_is_recorded_next_cycle(tmp_path, algos):
    rig = make_rig(tmp_path, algos, utc(2024, 6, 4, 13, 59))
    try:
        card = rig.add("AAPL", "flipper", 5_000)
        t = utc(2024, 6, 4, 14, 0)
        first = rig.step(t)
        assert [o.action for o in first.outcomes] == ["buy"]
        assert first.fills == [] and rig.system.get_transactions(card) == []
        assert rig.market.bars_between("AAPL", to_epoch(t), to_epoch(t) + 600) == []  # bar T not out yet
        (order,) = rig.system.open_orders()
        assert order.status == "submitted" and order.submitted_at == "2024-06-04T14:00:02Z"
        assert rig.parts.broker.get_order(order.client_order_id).status == "submitted"

        second = rig.step(t + timedelta(minutes=1))
        assert [f.client_order_id for f in second.fills] == [order.client_order_id]
        (tx,) = rig.system.get_transactions(card)
        bar_t = rig.market.bars_between("AAPL", to_epoch(t), to_epoch(t))[0]
        assert (tx.type, tx.shares, tx.timestamp) == ("buy", order.shares, "2024-06-04T14:00:00Z")
        assert Decimal(str(tx.price)) == Decimal(str(bar_t.open))
        # The decision used the close of bar T−1; the fill used the open of bar T.
        bar_before = rig.market.last_bars("AAPL", 1, to_epoch(t))[0]
        assert bar_before.ts == to_epoch(t) - 60
        assert order.shares == int(Decimal(5_000) // Decimal(str(bar_before.close)))
        assert [o.action for o in second.outcomes] == ["sell"]
    finally:
        rig.close()


def test_nothing_runs_on_independence_day(tmp_path, algos):
    rig = make_rig(tmp_path, algos, utc(2024, 7, 3, 16, 50))
    try:
        cal = rig.parts.calendar
        card = rig.add("AAPL", "flipper", 5_000)
        # July 3rd closes early (13:00 ET); the cycle after its last minute is on the 5th.
        schedule = [utc(2024, 7, 3, 16, 55)]
        while len(schedule) < 8:
            schedule.append(rig.next_minute(schedule[-1]))
        assert schedule[4:6] == [utc(2024, 7, 3, 16, 59), utc(2024, 7, 5, 13, 30)]
        for instant in (utc(2024, 7, 3, 16, 59, 3), utc(2024, 7, 4, 12), utc(2024, 7, 4, 15, 0, 1)):
            assert next_cycle_minute(cal, instant, 2.0) == utc(2024, 7, 5, 13, 30)
        for minute in schedule[:5]:
            rig.step(minute)

        # Asked to run on the holiday anyway, the cycle records the fill that is due but sends nothing.
        rig.clock.set(utc(2024, 7, 4, 15, 0, 2))
        rig.publish(rig.clock.now())
        holiday = rig.parts.cycle.run_minute(utc(2024, 7, 4, 15, 0))
        assert [coid_minute(f.client_order_id) for f in holiday.fills] == [utc(2024, 7, 3, 16, 59)]
        assert [(o.action, o.reason) for o in holiday.outcomes] == [("refused", "the market is closed")]
        assert rig.system.open_orders() == []

        for minute in schedule[5:]:
            rig.step(minute)
        decided = [coid_minute(o.client_order_id) for o in rig.system.orders_for(card)]
        assert decided == schedule  # one order a minute, none on the 4th
        assert_fills_match_bars(rig)
    finally:
        rig.close()


def test_early_close_day_stops_at_1800z_after_210_cycles(tmp_path, algos):
    rig = make_rig(tmp_path, algos, utc(2024, 11, 29, 14, 29))
    try:
        cal = rig.parts.calendar
        card = rig.add("AAPL", "flipper", 5_000)
        minutes = rig.session_minutes(date(2024, 11, 29))
        assert len(minutes) == 210
        assert (minutes[0], minutes[-1]) == (utc(2024, 11, 29, 14, 30), utc(2024, 11, 29, 17, 59))
        results = [rig.step(m) for m in minutes]
        assert all(r.orders == 1 for r in results)
        orders = rig.system.orders_for(card)
        assert len(orders) == 210
        assert coid_minute(orders[-1].client_order_id) == utc(2024, 11, 29, 17, 59)
        assert not cal.is_open(utc(2024, 11, 29, 18, 0))
        assert rig.next_minute(minutes[-1]) == utc(2024, 12, 2, 14, 30)
        assert next_cycle_minute(cal, utc(2024, 11, 29, 17, 59, 2, 500_000), 2.0) == utc(2024, 12, 2, 14, 30)
        late = rig.step(utc(2024, 11, 29, 18, 0))  # forced past the close: the last fill, no order
        assert [coid_minute(f.client_order_id) for f in late.fills] == [utc(2024, 11, 29, 17, 59)]
        assert [(o.action, o.reason) for o in late.outcomes] == [("refused", "the market is closed")]
        assert len(rig.system.orders_for(card)) == 210
    finally:
        rig.close()


def test_outcomes_are_counted_per_instance_and_cached_algorithms_are_dropped_when_stopped(tmp_path, algos):
    rig = make_rig(tmp_path, algos, utc(2024, 6, 4, 15, 0))
    try:
        a = rig.add("AAPL", "flipper", 3_000)
        b = rig.add("MSFT", "flipper", 3_000)
        rig.step(utc(2024, 6, 4, 15, 1))
        assert set(rig.parts.cycle._algos) == {a, b}
        (buy,) = rig.system.open_orders()[1:]
        assert (buy.algorithm_id, buy.side) == (b, "buy")
        stopped = rig.service.stop_instance(b)
        assert stopped.message.endswith(f"; canceled its open buy of {buy.shares} MSFT")
        result = rig.step(utc(2024, 6, 4, 15, 2))
        assert [o.instance_id for o in result.outcomes] == [a]
        assert set(rig.parts.cycle._algos) == {a}
        # The stopped card's open buy was canceled at the stop: it never fills, nothing is left to sell.
        assert Counter(f.instance_id for f in result.fills) == Counter({a: 1})
        assert rig.system.get_order(buy.client_order_id).status == "canceled"
        assert rig.parts.broker.position("MSFT") == 0 and rig.system.get_transactions(b) == []
    finally:
        rig.close()


def test_transaction_timestamps_parse_back_to_the_decision_minute(tmp_path, algos):
    rig = make_rig(tmp_path, algos, utc(2024, 6, 4, 15, 0))
    try:
        rig.add("AAPL", "flipper", 3_000)
        for m in (utc(2024, 6, 4, 15, 1), utc(2024, 6, 4, 15, 2), utc(2024, 6, 4, 15, 3)):
            rig.step(m)
        stamps = [parse_utc_text(t.timestamp) for t in rig.system.all_transactions()]
        assert stamps == [utc(2024, 6, 4, 15, 1), utc(2024, 6, 4, 15, 2)]
    finally:
        rig.close()


# --- the full path with real alpaca-py clients against the fake Alpaca server --------------

def test_full_path_on_alpaca_paper_against_the_fake_server(tmp_path, algos):
    alpaca_broker = pytest.importorskip("app.engine.alpaca.broker")
    from app.engine.brokers.protocol import OrderState  # noqa: F401 - the protocol the broker speaks
    from app.engine.marketdata.clock import ManualClock
    from app.engine.host.wiring import EngineParts
    from app.engine.host.service import EngineService
    from app.engine.marketdata.calendar import MarketCalendar
    from app.engine.system.settings import Settings
    from app.engine.sim.market import SimMarket
    from app.storage.market_store import MarketStore
    from tests.fakes.alpaca_server import FakeAlpaca

    cal = MarketCalendar()
    # Realistic bars for the fake's data API: five earlier sessions and today's.
    scratch = MarketStore(tmp_path / "scratch.db")
    sim = SimMarket(cal, scratch, seed=5)
    days = [*cal.sessions_between(date(2024, 5, 27), date(2024, 6, 3)), date(2024, 6, 4)]
    bars = [b for d in days for b in sim.session_bars("AAPL", d)]
    scratch.close()

    clock = ManualClock(utc(2024, 6, 4, 15, 0, 2))
    with FakeAlpaca(cash=50_000, fill_delay=0.05) as fake:
        fake.add_asset("AAPL")
        fake.add_bars("AAPL", [tuple(b) for b in bars])
        fake.set_now(clock.now)
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, data_root=tmp_path / "data",
                            trading_url=fake.origin, data_url=fake.origin, stream_url=fake.stream_url,
                            algorithm_dirs=(algos,))
        broker = alpaca_broker.AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)
        parts = EngineParts.build(settings, clock=clock, broker=broker)
        try:
            assert parts.mode == "paper"
            service = EngineService(parts)
            with pytest.raises(ServiceError):
                service.create_instance("ZZZZ", "flipper", "1000")  # not an asset at the broker
            card = service.create_instance("AAPL", "flipper", "5000")
            assert service.available_cash() == Decimal(45_000)

            def step(minute: datetime):
                clock.set(minute + timedelta(seconds=2))
                parts.feed.set_symbols(["AAPL"])
                parts.feed.poll(clock.now())
                return parts.cycle.run_minute(minute)

            fake.set_price("AAPL", "101.50")
            first = step(utc(2024, 6, 4, 15, 1))
            (bought,) = first.fills  # Alpaca fills within the cycle's wait
            assert (bought.side, bought.price) == ("buy", Decimal("101.5"))
            assert bought.shares == int(Decimal(5_000) // Decimal(str(parts.market.last_bars(
                "AAPL", 1, to_epoch(utc(2024, 6, 4, 15, 1)))[0].close)))
            assert fake.position_qty("AAPL") == bought.shares
            assert fake.order(bought.client_order_id)["status"] == "filled"

            # Alpaca's own 504 retry after accepting: found by client id, sent once, recorded once.
            fake.set_price("AAPL", "102.00")
            fake.faults.gateway_timeout_after_accept(1)
            second = step(utc(2024, 6, 4, 15, 2))
            assert len(second.fills) == 1, (parts.system.orders_for(card)[-1], fake.orders()[-1]["status"],
                                            parts.system.get_transactions(card))
            (sold,) = second.fills
            assert (sold.side, sold.shares, sold.price) == ("sell", bought.shares, Decimal("102"))
            assert [o["client_order_id"] for o in fake.orders()].count(sold.client_order_id) == 1
            assert fake.position_qty("AAPL") == 0

            # A partial fill then cancel records only the filled shares.
            fake.faults.partial_fill(7, final_status="canceled", final_after=0.1)
            third = step(utc(2024, 6, 4, 15, 3))
            (part,) = third.fills
            assert part.shares == 7 and fake.position_qty("AAPL") == 7
            assert parts.system.get_order(part.client_order_id).status == "partial"

            txs = parts.system.get_transactions(card, oldest_first=True)
            assert [(t.type, t.shares) for t in txs] == [("buy", bought.shares), ("sell", bought.shares), ("buy", 7)]
            price = Decimal(str(parts.market.latest_bar("AAPL").close))
            (snapshot,) = service.cards()
            expected = card_figures(5_000, txs, price)
            assert (snapshot.shares, snapshot.pnl, snapshot.uninvested) == (7, expected.pnl, expected.uninvested)
            assert expected.uninvested == Decimal(5_000) - bought.shares * Decimal("101.5") \
                + bought.shares * Decimal("102") - 7 * Decimal("102")
        finally:
            parts.close()


def test_algorithm_data_connections_do_not_pile_up_when_worker_threads_come_and_go(tmp_path):
    """Slow workers are replaced by new threads; their data connections must be reused, not leaked."""
    import os
    import threading

    from app.engine.minute.cycle import StoreContext
    from app.storage.market_store import MarketStore
    from app.storage.system_store import SystemStore

    MarketStore(tmp_path / "stocks.db").close()
    SystemStore(tmp_path / "system.db").close()
    context = StoreContext(tmp_path / "stocks.db", tmp_path / "system.db")
    context.last_bars("AAPL", 5, 1_700_000_000)  # warm: one pair of connections
    open_fds = len(os.listdir("/proc/self/fd"))
    for _ in range(30):  # 30 short-lived worker threads, one after the other
        worker = threading.Thread(target=lambda: (context.last_bars("AAPL", 5, 1_700_000_000),
                                                  context.transactions(1)))
        worker.start()
        worker.join()
    assert len(os.listdir("/proc/self/fd")) <= open_fds
    context.close()
    assert len(os.listdir("/proc/self/fd")) < open_fds


def test_a_burst_of_concurrent_calls_leaves_at_most_keep_pairs_open(tmp_path):
    """Replaced workers can run more calls at once than there are workers; the extra pairs close."""
    import os
    import threading

    from app.engine.minute.cycle import StoreContext
    from app.storage.market_store import MarketStore
    from app.storage.system_store import SystemStore

    MarketStore(tmp_path / "stocks.db").close()
    SystemStore(tmp_path / "system.db").close()
    context = StoreContext(tmp_path / "stocks.db", tmp_path / "system.db", keep=2)
    before = len(os.listdir("/proc/self/fd"))
    inside, release = threading.Barrier(7), threading.Event()

    def call() -> None:
        with context._stores():  # noqa: SLF001 - hold a pair as a slow algorithm would
            inside.wait()
            release.wait()

    workers = [threading.Thread(target=call) for _ in range(6)]
    for worker in workers:
        worker.start()
    inside.wait()  # six pairs open at once
    during = len(os.listdir("/proc/self/fd"))
    release.set()
    for worker in workers:
        worker.join()
    after = len(os.listdir("/proc/self/fd"))
    assert during > after  # four of the six pairs were closed on return...
    assert context._pool.qsize() == 2  # noqa: SLF001 - ...and two kept for the next minute
    context.close()
    assert len(os.listdir("/proc/self/fd")) == before
