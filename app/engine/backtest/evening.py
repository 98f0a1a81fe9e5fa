"""The evening check: after a session's close, each card's day is replayed and compared with live.

The engine thread gathers what each card did (``CardDay``: its fills before and during the day, its
value at the close); ``EveningChecks`` replays the days one card after another on a daemon thread
(each replay in a worker process of its own, as every backtest: an algorithm file never runs in
the kiosk) and hands each ``DayCheck`` to a callback, which the engine turns into a queued call
back onto its own thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping

from app.engine.backtest.day_check import (DEFAULT_THRESHOLD_PCT, DayCheck, DayFill, compare_day, live_day_fills,
                                           threshold_for)
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.engine.portfolio.money import card_figures, to_decimal
from app.storage.market_store import MarketStore
from app.storage.records import TransactionRecord
from app.storage.system_store import SystemStore
from app.storage.timefmt import parse_utc_text, to_epoch

if TYPE_CHECKING:  # the replay is imported at the first check, not at the engine's start
    from app.engine.backtest.replay import BacktestError, BacktestRequest, BacktestResult

log = logging.getLogger("autotrader.engine.backtest")

DAY_CHECK_KEY = "day_check:{card}"  # system.db config: the card's last DayCheck as JSON
LAST_CHECKED_KEY = "day_check_day"  # system.db config: the last session whose cards were checked

# Replays requests in order, yielding (index, result or error); the event cancels what is left.
Replay = Callable[[Sequence["BacktestRequest"], threading.Event],
                  Iterator[tuple[int, "BacktestResult | BacktestError"]]]


@dataclass(frozen=True)
class CardDay:
    """One card's day as live traded it: the input of its evening check."""

    card_id: int
    algorithm_type: str
    symbol: str
    capital: Decimal
    params: Mapping[str, Any]
    day: date
    prior: tuple[TransactionRecord, ...]  # fills before the session's open, oldest first
    today: tuple[TransactionRecord, ...]  # fills during the session, oldest first
    last_close: float  # the session's last stored close, where both sides are valued
    slippage_bps: float = 0.0  # the simulated broker's slippage (sim mode); 0 against a real broker
    pending: tuple[tuple[datetime, str], ...] = ()  # decisions (minute, side) whose orders are still open

    @property
    def live_value(self) -> Decimal:
        """The card's value at the session's last close, as live booked it."""
        return card_figures(self.capital, self.prior + self.today, self.last_close).value


def request_for(job: CardDay) -> BacktestRequest:
    """The backtest of ``job``'s session, continuing the card's book at the open (raises BacktestError)."""
    from app.engine.backtest.replay import BacktestRequest

    return BacktestRequest(algorithm_type=job.algorithm_type, symbol=job.symbol, start=job.day, end=job.day,
                           capital=job.capital, params=job.params, slippage_bps=job.slippage_bps,
                           prior_fills=job.prior)


def compare_with(job: CardDay, outcome: BacktestResult | BacktestError,
                 decided_at: Callable[[str | None], datetime | None],
                 threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> DayCheck:
    """Compare ``job``'s live day with its replay (an error is a check that says why it has none)."""
    if isinstance(outcome, Exception):
        return DayCheck(job.card_id, job.day, error=str(outcome))
    backtest = [DayFill(t.decided_at, t.side, t.shares, t.price) for t in outcome.trades]
    # Both values at the same last close, and without the fills of decisions live still has open.
    still_open = set(job.pending)
    booked = [TransactionRecord(0, job.card_id, t.side, t.shares, float(t.price), "", None)
              for t in outcome.trades if (t.decided_at, t.side) not in still_open]
    return compare_day(job.card_id, job.day, live_day_fills(job.today, decided_at), backtest,
                       live_value=job.live_value,
                       backtest_value=card_figures(job.capital, job.prior + tuple(booked), job.last_close).value,
                       threshold=threshold_for(job.capital, threshold_pct), pending=job.pending)


def last_closed_session(calendar: MarketCalendar, now: datetime) -> date | None:
    """The most recent session whose close is at or before ``now`` (None outside the calendar)."""
    try:
        day = calendar.next_close(now).date()  # the session now in, or the next one (closes are UTC afternoons)
        while calendar.session_close(day) > now:
            day = calendar.previous_session(day)
    except CalendarRangeError:
        return None
    return day


def gather_day(system: SystemStore, market: MarketStore, calendar: MarketCalendar, day: date,
               decided_at: Callable[[str | None], datetime | None], *, slippage_bps: float = 0.0) -> list[CardDay]:
    """What each running card did on session ``day``, for its evening check.

    Cards added after the session opened (no whole day to compare), faulted cards and tickers
    without a stored bar in the session are left out.
    """
    opened, closed = calendar.session_open(day), calendar.session_close(day)
    open_orders: dict[int, list[tuple[datetime, str]]] = {}
    for order in system.open_orders():
        minute = decided_at(order.client_order_id)
        if minute is not None:
            open_orders.setdefault(order.algorithm_id, []).append((minute, order.side))
    jobs = []
    for inst in system.all_instances("running"):
        if inst.faulted_reason or parse_utc_text(inst.created_at) > opened:
            continue
        last = market.last_bars(inst.ticker, 1, to_epoch(closed))
        if not last or last[-1].ts < to_epoch(opened):
            continue
        txs = system.get_transactions(inst.id, oldest_first=True)
        prior = tuple(t for t in txs if parse_utc_text(t.timestamp) < opened)
        today = tuple(t for t in txs if opened <= parse_utc_text(t.timestamp) < closed)
        capital = to_decimal(inst.initial_capital, "capital")
        try:
            params = json.loads(inst.params_json or "{}")
        except ValueError:
            params = {}
        jobs.append(CardDay(card_id=inst.id, algorithm_type=inst.algorithm_type, symbol=inst.ticker,
                            capital=capital, params=params if isinstance(params, dict) else {}, day=day,
                            prior=prior, today=today,
                            last_close=last[-1].close,
                            slippage_bps=slippage_bps, pending=tuple(open_orders.get(inst.id, ()))))
    return jobs


class EveningChecks:
    """Runs a day's checks on one daemon thread; ``deliver`` gets each check from that thread."""

    def __init__(self, replay: Replay, decided_at: Callable[[str | None], datetime | None],
                 deliver: Callable[[DayCheck], None], threshold_pct: float = DEFAULT_THRESHOLD_PCT) -> None:
        self._replay = replay
        self._decided_at = decided_at
        self._deliver = deliver
        self._threshold_pct = threshold_pct
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        """True while a day's checks are still being replayed."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, jobs: Sequence[CardDay]) -> bool:
        """Check ``jobs`` in the background; False (nothing started) while an earlier day still runs."""
        if self.running:
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(tuple(jobs),), name="evening-check", daemon=True)
        self._thread.start()
        return True

    def _run(self, jobs: tuple[CardDay, ...]) -> None:
        from app.engine.backtest.replay import BacktestError

        runnable, requests = [], []
        for job in jobs:
            try:
                requests.append(request_for(job))
                runnable.append(job)
            except BacktestError as exc:
                self._deliver(DayCheck(job.card_id, job.day, error=str(exc)))
        try:
            for index, outcome in self._replay(requests, self._stop):
                if self._stop.is_set():
                    return
                job = runnable[index]
                try:
                    check = compare_with(job, outcome, self._decided_at, self._threshold_pct)
                except Exception as exc:  # noqa: BLE001 - one card's check must not end the others'
                    log.exception("evening check of card %d failed", job.card_id)
                    check = DayCheck(job.card_id, job.day, error=f"{type(exc).__name__}: {exc}")
                self._deliver(check)
        except Exception:  # noqa: BLE001 - the worker could not start: tomorrow's check tries again
            log.exception("the evening check stopped")

    def wait(self, timeout_s: float) -> bool:
        """Wait for the day's checks to end; True when they have."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the card being replayed (its worker process ends with it) and wait a little."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
