"""When the evening check runs: a timer on the engine thread, a few minutes after each close.

Five minutes after a session's close (the last bars and fills are recorded by then) the engine
gathers each running card's day, marks the session as checked in system.db, and replays the days
on a background thread (``backtest.evening``). Each result comes back to the engine thread through
a queued signal: it is kept in system.db for ``status`` and the card's detail view, and a day that
diverged from its backtest raises a notice. A session already checked is not checked again after
a restart.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Iterator, Sequence

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from app.engine.backtest.day_check import DayCheck
from app.engine.backtest.evening import (DAY_CHECK_KEY, LAST_CHECKED_KEY, EveningChecks, gather_day,
                                         last_closed_session)
from app.engine.events import Notice
from app.engine.host.signals import QtPublisher
from app.engine.host.wiring import EngineParts
from app.engine.minute.order_ids import ClientOrderIds

if TYPE_CHECKING:
    from app.engine.backtest.replay import BacktestError, BacktestRequest, BacktestResult

log = logging.getLogger("autotrader.engine.orchestrator")

AFTER_CLOSE = timedelta(minutes=5)
MAX_TIMER_MS = 60 * 60 * 1000  # look again at least hourly: clock changes, sleeps, sim jumps


class EveningSchedule(QObject):
    """Starts each session's evening check once, and records what it finds (engine thread only)."""

    _checked = Signal(object)  # a DayCheck, emitted on the checking thread, delivered on this one

    def __init__(self, parts: EngineParts, publisher: QtPublisher) -> None:
        super().__init__()
        self.parts = parts
        self.publisher = publisher
        ids = ClientOrderIds.for_store(parts.system)

        def decided_at(client_order_id: str | None) -> datetime | None:
            identity = ids.parse(client_order_id) if client_order_id else None
            return identity.minute if identity is not None else None

        self._decided_at = decided_at
        self.checks = EveningChecks(self._replay, decided_at, self._checked.emit)
        self._checked.connect(self._record, Qt.ConnectionType.QueuedConnection)
        last = parts.system.get_config(LAST_CHECKED_KEY)
        self._last_checked: date | None = date.fromisoformat(last) if last else None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer)

    def _replay(self, requests: Sequence[BacktestRequest],
                cancel: threading.Event) -> Iterator[tuple[int, BacktestResult | BacktestError]]:
        # One worker process for the day's cards, as every backtest runs (never in the kiosk); only
        # sessions closed on the engine's clock.
        from app.engine.backtest.isolated import run_isolated_batch

        return run_isolated_batch(requests, settings=self.parts.settings, now=self.parts.clock.now(), cancel=cancel)

    def due(self, now: datetime) -> date | None:
        """The session to check now: closed at least AFTER_CLOSE ago and not checked yet."""
        day = last_closed_session(self.parts.calendar, now - AFTER_CLOSE)
        if day is None or (self._last_checked is not None and day <= self._last_checked):
            return None
        return day

    def rearm(self) -> None:
        """Fire at the next moment a check is due (at once if one is due now)."""
        clock = self.parts.clock
        now = clock.now()
        if self.due(now) is not None:
            self._timer.start(0)
            return
        at = self.parts.calendar.next_close(now) + AFTER_CLOSE
        delay = clock.real_seconds_until(at) * 1000
        self._timer.start(int(min(MAX_TIMER_MS, max(0, math.ceil(delay)))))

    @Slot()
    def _on_timer(self) -> None:
        try:
            self.start_due()
        except Exception:  # noqa: BLE001 - a report must never stop the engine
            log.exception("the evening check could not start")
        self.rearm()

    def start_due(self) -> date | None:
        """Gather and start the due session's checks; the session checked (None: nothing due yet)."""
        day = self.due(self.parts.clock.now())
        if day is None or self.checks.running:
            return None
        p = self.parts
        jobs = gather_day(p.system, p.market, p.calendar, day, self._decided_at,
                          slippage_bps=p.options.sim_slippage_bps if p.mode == "sim" else 0.0)
        p.system.set_config(LAST_CHECKED_KEY, day.isoformat())
        self._last_checked = day
        log.info("evening check of %s: replaying %d card(s)", day, len(jobs))
        self.checks.start(jobs)
        return day

    @Slot(object)
    def _record(self, check: DayCheck) -> None:
        try:
            self.parts.system.set_config(DAY_CHECK_KEY.format(card=check.card_id), check.to_json())
        except Exception:  # noqa: BLE001 - the engine may be closing; the check is only a report
            log.exception("could not record the evening check of card %d", check.card_id)
            return
        log.info("evening check of card %d on %s: %s", check.card_id, check.day, check.text())
        if check.diverged:
            self.publisher.notice(Notice(
                "info", f"card {check.card_id} on {check.day:%b %d}: {check.text()} — beyond its backtest",
                check.card_id, at=self.parts.clock.now()))

    def close(self) -> None:
        """Stop the timer and the check in progress."""
        self._timer.stop()
        self.checks.close()


def read_day_check(parts: EngineParts, card_id: int) -> DayCheck | None:
    """The card's last evening check from system.db (None before its first)."""
    text = parts.system.get_config(DAY_CHECK_KEY.format(card=card_id))
    if not text:
        return None
    try:
        return DayCheck.from_json(text)
    except ValueError:
        log.warning("card %d: unreadable evening check in system.db", card_id)
        return None
