"""The real Orchestrator on its engine QThread, on an accelerated SimClock (EngineHost.for_tests).

Cards are created in the data folder first (through the same EngineService, on a ManualClock rig
that is then closed) so the engine trades from its very first cycle.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.engine.host.client import ServiceError
from app.engine.host.thread import EngineHost
from app.engine.portfolio.money import card_figures
from app.engine.marketdata.minutes import ceil_minute
from app.engine.minute import schedule
from app.engine.minute.schedule import next_cycle_minute
from app.engine.marketdata.calendar import MarketCalendar
from app.storage.market_store import MarketStore
from app.storage.system_store import SystemStore
from app.storage.timefmt import to_epoch, utc_text
from tests.engine.crash_child import FLIPPER_SOURCE, PEEKER_SOURCE, SimRig, coid_minute, write_algorithm

OFFSET = timedelta(seconds=2)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def algos(tmp_path: Path) -> Path:
    folder = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    return write_algorithm(folder, "peeker", PEEKER_SOURCE)


@pytest.fixture
def hosts(qtbot):
    """Start hosts with ``hosts.start(...)``; every one is stopped at teardown, even on failure."""
    started: list[EngineHost] = []

    class Hosts:
        def start(self, *args, **kwargs) -> EngineHost:
            host = EngineHost.for_tests(*args, **kwargs)
            started.append(host)
            return host

    yield Hosts()
    for host in started:
        host.stop()


def seed_cards(root: Path, algos: Path, when: datetime, cards: list[tuple]) -> list[int]:
    """Create cards (ticker, type, capital, params) in ``root``'s sim folder at ``when``."""
    rig = SimRig(root, when, algorithm_dirs=(algos,))
    try:
        return [rig.add(t, a, c, **p) for t, a, c, p in cards]
    finally:
        rig.close()


def engine_call(host: EngineHost, fn, *args, timeout: float = 20.0):
    """Run ``fn`` on the engine thread through the EngineClient and return (or raise) its result."""
    # UI tests earlier in the session may leave their qasync loop marked as running in this thread.
    outer = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    loop = asyncio.new_event_loop()
    try:
        async def go():
            return await asyncio.wait_for(host.client.call(fn, *args), timeout)
        return loop.run_until_complete(go())
    finally:
        loop.close()
        asyncio.events._set_running_loop(outer)


def report_minutes(host: EngineHost) -> list[datetime]:
    return [r.minute for r in host.orchestrator.reports]


def test_next_cycle_minute_and_ceil_minute():
    cal = MarketCalendar()
    assert ceil_minute(utc(2024, 6, 4, 14, 0)) == utc(2024, 6, 4, 14, 0)
    assert ceil_minute(utc(2024, 6, 4, 14, 0, 0, 1)) == utc(2024, 6, 4, 14, 1)
    # Before the wake instant of minute T the next cycle is T; just after it, T + 1.
    assert next_cycle_minute(cal, utc(2024, 6, 4, 14, 0, 1), 2.0) == utc(2024, 6, 4, 14, 0)
    assert next_cycle_minute(cal, utc(2024, 6, 4, 14, 0, 2, 1), 2.0) == utc(2024, 6, 4, 14, 1)
    # The last minute of a full session, then the next morning; weekends skipped.
    assert next_cycle_minute(cal, utc(2024, 6, 4, 19, 59, 1), 2.0) == utc(2024, 6, 4, 19, 59)
    assert next_cycle_minute(cal, utc(2024, 6, 4, 19, 59, 3), 2.0) == utc(2024, 6, 5, 13, 30)
    assert next_cycle_minute(cal, utc(2024, 6, 7, 20, 30), 2.0) == utc(2024, 6, 10, 13, 30)
    # Winter time: the open is 14:30Z.
    assert next_cycle_minute(cal, utc(2024, 12, 2, 3), 2.0) == utc(2024, 12, 2, 14, 30)


def test_orchestrator_trades_on_the_right_minutes_and_cards_follow_the_money_rules(tmp_path, algos, qtbot, hosts):
    start = utc(2024, 6, 4, 12, 0)  # before the open: the sim clock jumps to just before 13:30
    flipper, peeker, holder = seed_cards(tmp_path, algos, start, [
        ("AAPL", "flipper", 10_000, {}), ("AAPL", "peeker", 1_000, {}), ("MSFT", "buy_and_hold", 5_000, {})])
    host = hosts.start(tmp_path, speed=200, start=start, algorithm_dirs=(algos,))
    cards_seen = []
    host.signals.cards_changed.connect(cards_seen.append)
    qtbot.waitUntil(lambda: len(host.orchestrator.reports) >= 20, timeout=20_000)
    status = engine_call(host, host.service.status)
    host.stop()
    qtbot.wait(50)  # deliver the last queued signals

    reports = list(host.orchestrator.reports)
    minutes = [r.minute for r in reports]
    assert minutes[0] == utc(2024, 6, 4, 13, 30)
    assert minutes == [minutes[0] + timedelta(minutes=i) for i in range(len(minutes))]
    assert host.orchestrator.totals["missed"] == 0
    for r in reports:
        assert r.started_at >= r.minute + OFFSET  # never before bar T−1 is complete
        assert r.started_at - r.scheduled_at < timedelta(seconds=30)  # 50 ms real at speed 600
        assert r.faults == 0 and r.instances_run == 3
    assert status["mode"] == "sim" and {c["id"] for c in status["instances"]} == {flipper, peeker, holder}
    assert status["last_cycle"]["orders"] >= 1

    system = SystemStore(tmp_path / "sim" / "system.db")
    market = MarketStore(tmp_path / "sim" / "stocks.db")
    try:
        flips = system.orders_for(flipper)
        assert [coid_minute(o.client_order_id) for o in flips] == minutes  # one decision a minute
        assert all(o.status == "filled" for o in flips[:-1])
        assert system.orders_for(peeker) == []
        assert all(i.faulted_reason is None for i in system.all_instances())
        for tx in system.all_transactions():
            decided = coid_minute(tx.client_order_id)
            ticker = system.get_instance(tx.algorithm_id).ticker
            (bar,) = market.bars_between(ticker, to_epoch(decided), to_epoch(decided))
            assert tx.timestamp == utc_text(decided)
            assert Decimal(str(tx.price)) == Decimal(str(bar.open))
        # The last published cards are what the money rules give from the recorded fills.
        # Each update carries the cards that changed since the one before: folded, they are the cards shown.
        final: dict = {}
        for update in cards_seen:
            final = update.apply(final)
        for inst in system.all_instances("running"):
            price = Decimal(str(market.latest_bar(inst.ticker).close))
            expected = card_figures(inst.initial_capital, system.get_transactions(inst.id, oldest_first=True), price)
            card = final[inst.id]
            assert (card.shares, card.trade_count, card.price) == (expected.shares, expected.trade_count, price)
            assert (card.value, card.uninvested, card.pnl) == (expected.value, expected.uninvested, expected.pnl)
        assert final[flipper].trade_count >= len(minutes) - 1
    finally:
        system.close()
        market.close()


def test_an_overrun_minute_runs_late_and_a_long_stall_is_counted_missed(tmp_path, algos, qtbot, hosts):
    # At 60x the catch-up window is 5 s of real time: 300 s simulated. Stalling the engine thread
    # inside a cycle for 78 s (simulated) passes the next minute's wake-up: it must run late, not be
    # skipped. A 390 s stall from 13:36:02 leaves 13:37 330 s late (missed, and counted) and 13:38
    # 270 s late (run now); the margins are 30 s simulated, half a second of real time.
    start = utc(2024, 6, 4, 13, 25)
    seed_cards(tmp_path, algos, start, [("AAPL", "flipper", 5_000, {})])
    host = hosts.start(tmp_path, speed=60, start=start, algorithm_dirs=(algos,))
    stalls = {utc(2024, 6, 4, 13, 32): 78 / 60, utc(2024, 6, 4, 13, 36): 390 / 60}

    def stall(report) -> None:  # runs on the engine thread, inside run_cycle
        if report.minute in stalls:
            time.sleep(stalls.pop(report.minute))

    host.signals.cycle_done.connect(stall, Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(lambda: any(m >= utc(2024, 6, 4, 13, 42) for m in report_minutes(host)), timeout=90_000)
    host.stop()
    reports = list(host.orchestrator.reports)
    minutes = [r.minute for r in reports]
    assert minutes[:7] == [utc(2024, 6, 4, 13, 30) + timedelta(minutes=i) for i in range(7)]
    late = reports[3]  # 13:33, woken while 13:32 was still running
    assert late.minute == utc(2024, 6, 4, 13, 33) and late.started_at - late.scheduled_at > timedelta(seconds=10)
    after = minutes[minutes.index(utc(2024, 6, 4, 13, 36)) + 1]
    assert after == utc(2024, 6, 4, 13, 38)  # 13:37 was too late; 13:38 was not
    assert host.orchestrator.totals["missed"] == 1  # 13:37, counted
    assert host.orchestrator.totals["cycles_run"] == len(minutes)


def test_no_catch_up_after_the_close():
    # The 19:58Z cycle overran past the close: 19:59 must not be traded at 20:00:01Z (its orders
    # would wait for the next open); the next cycle is the next morning's first minute.
    cal = MarketCalendar()
    assert schedule.minute_to_schedule(cal, utc(2024, 6, 4, 20, 0, 1), 2.0, utc(2024, 6, 4, 19, 58)) == \
        utc(2024, 6, 5, 13, 30)
    # Inside the session the same overrun is caught up: 19:57's cycle ending at 19:58:40Z.
    assert schedule.minute_to_schedule(cal, utc(2024, 6, 4, 19, 58, 40), 2.0, utc(2024, 6, 4, 19, 57)) == \
        utc(2024, 6, 4, 19, 58)
    # A wake-up for 19:59 that fires after the close is not traded.
    assert schedule.on_wake(cal, utc(2024, 6, 4, 20, 0, 3), utc(2024, 6, 4, 19, 59), 2.0).action == "reschedule"


def test_catch_up_takes_the_earliest_minute_within_the_window_and_counts_the_rest():
    cal = MarketCalendar()
    # The 14:00 cycle ran until 14:01:30: 14:01 (wake 14:01:02) is 28 s late and is run now.
    assert schedule.minute_to_schedule(cal, utc(2024, 6, 4, 14, 1, 30), 2.0, utc(2024, 6, 4, 14, 0)) == \
        utc(2024, 6, 4, 14, 1)
    # It ran until 14:03:30: 14:01 and 14:02 are past the 60 s window; 14:03 is 28 s late.
    assert schedule.minute_to_schedule(cal, utc(2024, 6, 4, 14, 3, 30), 2.0, utc(2024, 6, 4, 14, 0)) == \
        utc(2024, 6, 4, 14, 3)
    assert schedule.missed_minutes(cal, utc(2024, 6, 4, 14, 0), utc(2024, 6, 4, 14, 3)) == 2
    # A wake-up far too late (machine asleep) runs the current minute, not the scheduled one.
    wake = schedule.on_wake(cal, utc(2024, 6, 4, 15, 0, 5), utc(2024, 6, 4, 14, 10), 2.0)
    assert (wake.action, wake.minute) == ("run", utc(2024, 6, 4, 15, 0))  # its wake-up was 3 s ago
    # A timer that fires early is rescheduled; one on time runs its minute.
    assert schedule.on_wake(cal, utc(2024, 6, 4, 14, 10, 1), utc(2024, 6, 4, 14, 10), 2.0).action == "reschedule"
    assert schedule.on_wake(cal, utc(2024, 6, 4, 14, 10, 2), utc(2024, 6, 4, 14, 10), 2.0) == \
        schedule.Wake("run", utc(2024, 6, 4, 14, 10))
    # On a 300x simulated clock the window is 5 s of real time (1500 s simulated), not 200 ms.
    assert schedule.catch_up_window(300) == timedelta(seconds=1500) and schedule.catch_up_window(1) == schedule.CATCH_UP
    assert schedule.minute_to_schedule(cal, utc(2024, 6, 4, 14, 3, 30), 2.0, utc(2024, 6, 4, 14, 0),
                                       schedule.catch_up_window(300)) == utc(2024, 6, 4, 14, 1)
    # Across the night: the session's last minute is followed by the next open, nothing missed.
    assert schedule.following_minute(cal, utc(2024, 6, 4, 19, 59)) == utc(2024, 6, 5, 13, 30)
    assert schedule.missed_minutes(cal, utc(2024, 6, 4, 19, 59), utc(2024, 6, 5, 13, 30)) == 0


def test_no_cycle_on_independence_day(tmp_path, algos, qtbot, hosts):
    start = utc(2024, 7, 3, 16, 50)  # July 3rd closes early, at 17:00Z
    (card,) = seed_cards(tmp_path, algos, start, [("AAPL", "flipper", 5_000, {})])
    host = hosts.start(tmp_path, speed=200, start=start, algorithm_dirs=(algos,))
    qtbot.waitUntil(lambda: utc(2024, 7, 5, 13, 31) in report_minutes(host), timeout=20_000)
    host.stop()
    minutes = report_minutes(host)
    assert not any(m.date() == utc(2024, 7, 4).date() for m in minutes)
    i = minutes.index(utc(2024, 7, 3, 16, 59))
    assert minutes[i + 1:i + 3] == [utc(2024, 7, 5, 13, 30), utc(2024, 7, 5, 13, 31)]
    system = SystemStore(tmp_path / "sim" / "system.db")
    try:
        assert not any(o.client_order_id.count("20240704") for o in system.orders_for(card))
        last_of_3rd = [o for o in system.orders_for(card) if coid_minute(o.client_order_id) == utc(2024, 7, 3, 16, 59)]
        assert last_of_3rd[0].status == "filled" and last_of_3rd[0].filled_at == "2024-07-03T16:59:00Z"
    finally:
        system.close()


def test_early_close_stops_at_1800z(tmp_path, algos, qtbot, hosts):
    # The whole 210-cycle session is stepped in test_trading_cycle; here the real scheduler
    # runs its last half hour and must go straight from 17:59Z to Monday's open.
    start = utc(2024, 11, 29, 17, 25)
    (card,) = seed_cards(tmp_path, algos, start, [("AAPL", "flipper", 5_000, {})])
    host = hosts.start(tmp_path, speed=200, start=start, algorithm_dirs=(algos,))
    qtbot.waitUntil(lambda: utc(2024, 12, 2, 14, 30) in report_minutes(host), timeout=30_000)
    host.stop()
    minutes = report_minutes(host)
    friday = [m for m in minutes if m.day == 29]
    assert host.orchestrator.totals["missed"] == 0
    assert friday == [friday[0] + timedelta(minutes=i) for i in range(len(friday))]
    assert friday[-1] == utc(2024, 11, 29, 17, 59) and len(friday) >= 30
    assert minutes[len(friday)] == utc(2024, 12, 2, 14, 30)
    system = SystemStore(tmp_path / "sim" / "system.db")
    try:
        decided = [coid_minute(o.client_order_id) for o in system.orders_for(card)]
        assert [m for m in decided if m.day == 29] == friday
        assert all(o.status == "filled" for o in system.orders_for(card)[:len(friday)])
    finally:
        system.close()


def test_service_calls_run_on_the_engine_thread_and_errors_come_back(tmp_path, qtbot, hosts):
    host = hosts.start(tmp_path, speed=600, start=utc(2024, 6, 4, 15, 0))
    card = engine_call(host, host.service.create_instance, "NVDA", "sma_crossover", "2500", {"fast": "2", "slow": "3"})
    with pytest.raises(ServiceError, match="did you mean 'fast'"):
        engine_call(host, host.service.create_instance, "NVDA", "sma_crossover", "2500", {"fsat": "2"})
    qtbot.waitUntil(lambda: len(host.orchestrator.reports) >= 3, timeout=20_000)
    cards = engine_call(host, host.service.cards)
    assert [c.instance_id for c in cards] == [card] and cards[0].price is not None
    engine_call(host, host.service.stop_instance, card)
    assert engine_call(host, host.service.cards) == ()
    assert engine_call(host, host.service.status)["instances"] == []


def test_restart_reconciles_and_continues_where_it_stopped(tmp_path, algos, qtbot, hosts):
    start = utc(2024, 6, 4, 15, 0, 40)
    (card,) = seed_cards(tmp_path, algos, start, [("AAPL", "flipper", 5_000, {})])
    first = hosts.start(tmp_path, speed=200, start=start, algorithm_dirs=(algos,))
    qtbot.waitUntil(lambda: len(first.orchestrator.reports) >= 3, timeout=20_000)
    first.stop()
    last = first.orchestrator.reports[-1].minute
    second = hosts.start(tmp_path, speed=100, start=last + timedelta(seconds=3), algorithm_dirs=(algos,))
    qtbot.waitUntil(lambda: len(second.orchestrator.reports) >= 2, timeout=20_000)
    second.stop()
    assert second.orchestrator.reports[0].minute == last + timedelta(minutes=1)
    system = SystemStore(tmp_path / "sim" / "system.db")
    try:
        orders = system.orders_for(card)
        decided = [coid_minute(o.client_order_id) for o in orders]
        assert decided == sorted(set(decided))  # one decision a minute, none repeated
        assert all(o.status == "filled" for o in orders[:-1])
        assert len({t.client_order_id for t in system.all_transactions()}) == len(system.all_transactions())
    finally:
        system.close()
