"""The evening check against the real sim engine: live days equal their backtests, a gap diverges,
and the running engine checks each closed session once, records it and says so."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from app.engine.backtest.evening import (DAY_CHECK_KEY, LAST_CHECKED_KEY, CardDay, EveningChecks, compare_with,
                                         gather_day, request_for)
from app.engine.backtest.isolated import run_isolated_batch
from app.engine.backtest.day_check import DayCheck
from app.engine.backtest.replay import BacktestError, run_backtest
from app.engine.host.thread import EngineHost
from app.engine.host.wiring import EngineOptions
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.marketdata.clock import SimClock
from app.engine.minute.order_ids import ClientOrderIds
from app.engine.system.settings import Settings
from app.storage.system_store import SystemStore
from tests.engine.crash_child import FLIPPER_SOURCE, SimRig, write_algorithm
from tests.engine.test_orchestrator import engine_call

CAL = MarketCalendar()
DAYS = [date(2024, 6, 4), date(2024, 6, 5)]

# Buys 10 shares once and holds them for ever: a card that carries a position into the next day.
HOLDER_SOURCE = '''\
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Holder"

    def run(self, current_time, algo_id):
        if self.position() == 0 and not self.transactions() and self.last_price() is not None:
            return ("buy", 10)
        return ("hold", 0)
'''


# Ends its own process at the first minute: the batch's worker dies with it.
KILLER_SOURCE = '''\
import os

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Killer"

    def run(self, current_time, algo_id):
        os._exit(3)
'''


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def checks_for(rig: SimRig, day: date) -> dict[int, DayCheck]:
    ids = ClientOrderIds.for_store(rig.system)

    def decided_at(coid: str | None) -> datetime | None:
        identity = ids.parse(coid) if coid else None
        return identity.minute if identity else None

    jobs = gather_day(rig.system, rig.market, rig.parts.calendar, day, decided_at, slippage_bps=5.0)
    checks = {}
    for job in jobs:
        try:
            outcome = run_backtest(request_for(job), settings=rig.settings, now=rig.clock.now())
        except BacktestError as exc:
            outcome = exc
        checks[job.card_id] = compare_with(job, outcome, decided_at)
    return checks


def test_live_sim_days_equal_their_backtests_and_a_gap_in_live_diverges(tmp_path: Path) -> None:
    algos = tmp_path / "algos"
    write_algorithm(algos, "flipper", FLIPPER_SOURCE)
    write_algorithm(algos, "holder", HOLDER_SOURCE)
    rig = SimRig(tmp_path / "data", utc(2024, 6, 4, 13, 29), algorithm_dirs=(algos,),
                 options=EngineOptions(time_budget_s=5.0, sim_slippage_bps=5.0))
    try:
        crossing = rig.add("NVDA", "sma_crossover", 10_000, fast=2, slow=3)
        flipper = rig.add("AAPL", "flipper", 10_000)
        holder = rig.add("MSFT", "holder", 10_000)
        rig.start()
        skipped = set(rig.session_minutes(DAYS[1])[60:90])  # the engine was down for half an hour on day 2
        for day in DAYS:
            for minute in rig.session_minutes(day):
                if minute not in skipped:
                    rig.step(minute)
            rig.clock.set(CAL.session_close(day) + timedelta(minutes=5))
            checks = checks_for(rig, day)
            assert sorted(checks) == [crossing, flipper, holder]
            assert all(c.error is None for c in checks.values()), [c.error for c in checks.values()]
            if day == DAYS[0]:
                for card, check in checks.items():
                    # The sim broker and the backtest share the fill rule: no slippage between them.
                    assert not check.diverged, (card, check.text())
                    assert check.value_diff == 0 and all(p.slippage_bps == 0.0 for p in check.pairs)
                assert len(checks[flipper].pairs) > 150 and len(checks[crossing].pairs) > 10
                # The last minute's order fills at the last bar, recorded at the next open: still open.
                assert checks[flipper].pending == 1
                assert [(p.live.side, p.live.shares) for p in checks[holder].pairs] == [("buy", 10)]
            else:
                # Day 2 starts from each card's book at the open: the holder keeps its shares, no trade.
                assert checks[holder].pairs == () and not checks[holder].diverged
                assert checks[holder].live_value == checks[holder].backtest_value
                gap = checks[flipper]
                assert gap.diverged and gap.missed, gap.text()
                assert all(f.decided_at in skipped for f in gap.missed)
                assert f"{len(gap.missed)} missed" in gap.text()
    finally:
        rig.close()


def test_a_card_that_cannot_be_replayed_says_why_and_the_others_are_still_checked(tmp_path: Path) -> None:
    """One worker process for the day's cards; an algorithm that kills it fails only its own check."""
    algos = tmp_path / "algos"
    write_algorithm(algos, "killer", KILLER_SOURCE)
    settings = Settings(data_root=tmp_path / "data", sim_forced=True, algorithm_dirs=(algos,))

    def job(card: int, algorithm: str, **params) -> CardDay:
        return CardDay(card_id=card, algorithm_type=algorithm, symbol="NVDA", capital=Decimal(10_000), params=params,
                       day=DAYS[0], prior=(), today=(), last_close=100.0)

    jobs = [job(1, "sma_crossover", fast=2, slow=3), job(2, "killer"), job(3, "no_such_algorithm"),
            job(4, "sma_crossover", fast=2, slow=3)]
    delivered: list[DayCheck] = []

    def replay(requests, cancel):
        return run_isolated_batch(requests, settings=settings, now=utc(2024, 6, 5), cancel=cancel)

    checks = EveningChecks(replay, lambda coid: None, delivered.append)
    assert checks.start(jobs)
    assert checks.wait(120)
    by_card = {c.card_id: c for c in delivered}
    assert sorted(by_card) == [1, 2, 3, 4]
    assert "ended its process" in by_card[2].error and "no_such_algorithm" in by_card[3].error
    for card in (1, 4):  # before and after the one that killed its process
        assert by_card[card].error is None and by_card[card].missed  # live made none of the backtest's fills
        assert by_card[card].diverged
    assert not by_card[2].diverged and by_card[2].text().startswith("no backtest comparison")


def test_the_running_engine_checks_each_closed_session_once(qtbot, tmp_path: Path) -> None:
    data = tmp_path / "data"
    rig = SimRig(data, utc(2024, 6, 4, 13, 29))
    try:
        card = rig.add("NVDA", "sma_crossover", 10_000, fast=2, slow=3)
    finally:
        rig.close()
    # Up for the last minutes of the day only: the backtest of the whole day trades where live was down.
    settings = Settings(data_root=data, sim_forced=True)
    host = EngineHost(settings, SimClock(utc(2024, 6, 4, 19, 50), speed=120.0),
                      options=EngineOptions(time_budget_s=5.0))
    notices = []
    host.signals.notice.connect(notices.append)
    host.start()
    try:
        def recorded() -> str | None:
            with SystemStore(data / "sim" / "system.db") as store:
                return store.get_config(DAY_CHECK_KEY.format(card=card))
        qtbot.waitUntil(lambda: recorded() is not None, timeout=120_000)
        check = DayCheck.from_json(recorded())
        assert check.day == DAYS[0] and check.error is None and check.diverged and check.missed
        qtbot.waitUntil(lambda: any(n.instance_id == card and "beyond its backtest" in n.message for n in notices),
                        timeout=10_000)
        status = engine_call(host, lambda: host.service.status())
        (entry,) = [c for c in status["instances"] if c["id"] == card]
        assert entry["day_check"].startswith("Jun 04: live ") and "missed" in entry["day_check"]
        with SystemStore(data / "sim" / "system.db") as store:
            assert store.get_config(LAST_CHECKED_KEY) == "2024-06-04"
    finally:
        host.stop()
    assert json.loads(check.to_json())["card"] == card
