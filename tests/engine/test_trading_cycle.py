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

from app.engine.money import card_figures
from app.engine.orchestrator import next_cycle_minute
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
        rig.service.stop_instance(b)
        result = rig.step(utc(2024, 6, 4, 15, 2))
        assert [o.instance_id for o in result.outcomes] == [a]
        assert set(rig.parts.cycle._algos) == {a}
        # The stopped card's open order still gets its fill recorded.
        assert Counter(f.instance_id for f in result.fills) == Counter({a: 1, b: 1})
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
