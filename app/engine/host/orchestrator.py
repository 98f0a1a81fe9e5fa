"""The minute scheduler: a QObject on the engine QThread that wakes shortly after each market minute.

During a session it wakes at ``minute + wake_offset`` (default 2 s) on the engine's Clock, runs the
trading cycle, publishes the cards and sleeps until the next minute. Outside sessions it sleeps until
the next open with one timer (no polling). In sim mode it jumps the simulated clock over closed
hours so the simulated market is always trading.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import date, datetime, timedelta
from typing import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from app.engine.host.signals import EngineSignals, QtPublisher

from app.engine.marketdata.clock import Clock, SimClock
from app.engine.host.wiring import EngineOptions, EngineParts
from app.engine.host.service import EngineService
from app.engine.host.startup import open_engine
from app.engine.host.evening import EveningSchedule
from app.engine.events import CycleReport, Notice, StreamStatus
from app.engine.minute import schedule
# --- storage safety (issue 7): integrity check, daily backup, stop trading on a failed write ---
from app.engine.system.heap import settle_after_start
from app.engine.system.maintenance import (LAST_CYCLE_KEY, DailyBackup, DailySimPrune, SystemFileWatch,
                                           clock_behind_message, stopped_notice,
                                           storage_problem, utc_now)
from app.engine.system.settings import Settings
from app.engine.minute.cycle import CycleResult
from app.storage.timefmt import utc_text

log = logging.getLogger("autotrader.engine.orchestrator")

MAX_TIMER_MS = 60 * 60 * 1000  # re-check at least hourly: clock changes, sleeps, DST


class Orchestrator(QObject):
    """Owns the engine parts on its thread and runs the minute cycle on schedule."""

    ready = Signal()

    def __init__(self, settings: Settings, clock: Clock, signals: EngineSignals, *,
                 options: EngineOptions | None = None, skip_closed_hours: bool | None = None,
                 parts_factory: Callable[[], EngineParts] | None = None):
        super().__init__()
        self.settings = settings
        self.clock = clock
        self.signals = signals
        self.publisher = QtPublisher(signals)  # every state change leaves through it
        self._catch_up = schedule.catch_up_window(getattr(clock, "speed", 1.0) if isinstance(clock, SimClock) else 1.0)
        self.options = options or EngineOptions()
        self.skip_closed_hours = isinstance(clock, SimClock) if skip_closed_hours is None else skip_closed_hours
        self._parts_factory = parts_factory
        self.parts: EngineParts | None = None
        self.service: EngineService | None = None
        self._timer: QTimer | None = None
        self._scheduled: datetime | None = None
        self._last_run: datetime | None = None  # the minute of the last cycle run
        self._symbols: frozenset[str] = frozenset()
        self.started = threading.Event()
        self.start_error: BaseException | None = None
        self.reports: list[CycleReport] = []  # recent cycles (bounded), for status and benchmarks
        # Storage safety (issue 7): why trading stopped (None while trading), and the daily backup.
        self.trading_stopped: str | None = None
        self.broker_unchecked = False  # True while the broker-side reconciliation has not run yet
        self._reconciled_on: date | None = None  # the date of the last broker-side pass
        self.backup: DailyBackup | None = None
        # A clock behind the newest stored bar or the last cycle (issue 16): no trading until it passes.
        self.not_before: datetime | None = None
        self.watch: SystemFileWatch | None = None  # is system.db still the file opened? (each minute)
        self.waiting_for_clock = False
        self.sim_prune: DailySimPrune | None = None
        self.evening: EveningSchedule | None = None  # each close: every card's day against its backtest
        # Running totals of this process, written with last_cycle so a soak can watch from outside.
        # "missed": session minutes that never got a cycle (between two cycles of this process).
        self.totals = {"cycles_run": 0, "late_1s": 0, "late_max_s": 0.0, "refused": 0, "missed": 0}

    # --- life cycle (engine thread) ----------------------------------------------------

    @Slot()
    def start(self) -> None:
        """Start the engine (``startup.open_engine``: check, build, reconcile), publish, then schedule."""
        try:
            up = open_engine(self.settings, self.clock, self.options, self.publisher, self._parts_factory)
            self.parts, self.service = up.parts, up.service
            self.not_before, self.backup, self.watch, self.sim_prune = up.not_before, up.backup, up.watch, up.sim_prune
            # Until the broker's orders have been compared once, cards may lack fills a power cut
            # took: they do not trade (a Pi often boots before its network is up).
            self.broker_unchecked = not up.reconciled.checked
            self._reconciled_on = self.clock.now().date()
            # Whoever reports the stream (the bar stream on the UI thread, or the sim below), the
            # engine thread records it for `autotrader status`.
            self.signals.stream_changed.connect(self._record_stream)
            self._timer = QTimer(self)
            self._timer.setSingleShot(True)
            self._timer.setTimerType(Qt.TimerType.PreciseTimer)
            self._timer.timeout.connect(self._on_wake)
            if self.parts.feed.simulated:
                self.publisher.stream(StreamStatus("live", simulated=True))
            self._sync_symbols(initial=True)
            self.service.publish_all()
            for notice in up.notices:
                self.publisher.notice(notice)
            if self.parts.settings.evening_check:
                self.evening = EveningSchedule(self.parts, self.publisher)
            self._maintain()  # today's backup at start if it is missing
            settle_after_start()
        except BaseException as exc:  # noqa: BLE001 - reported to the host, which refuses to start
            log.exception("engine failed to start")
            reason = storage_problem(exc)
            self.start_error = RuntimeError(f"{reason} ({exc})") if reason else exc
            self.started.set()
            return
        self.started.set()
        self.ready.emit()
        self._schedule()

    @Slot(object)
    def _record_stream(self, status: StreamStatus) -> None:
        if self.publisher.watch is not None:
            self.publisher.watch.on_stream(status)
        if self.service is not None and self.parts is not None:
            try:
                self.service.record_stream(status, utc_now())
            except Exception:  # noqa: BLE001 - a status line must never stop the engine
                log.exception("could not record the stream state")

    @Slot()
    def stop(self) -> None:
        """Cancel the timer and close the parts (called on the engine thread)."""
        if self._timer:
            self._timer.stop()
        if self.evening:
            self.evening.close()
            self.evening = None
        if self.service:
            self.service.close()
        if self.parts:
            self._checkpoint_ledger()
            self.parts.close()
            self.parts = None

    def _checkpoint_ledger(self) -> None:
        """Record the card totals, so that the next start sums only the fills after them."""
        try:
            self.parts.cycle.ledger.checkpoint(self.parts.system)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a start-up shortcut only: without it the next start sums all
            log.exception("could not record the ledger checkpoint")

    def _running(self) -> tuple[EngineParts, EngineService]:
        """The parts and service of a started engine (the methods below run only after start)."""
        if self.parts is None or self.service is None:
            raise RuntimeError("the engine has not started")
        return self.parts, self.service

    # --- scheduling --------------------------------------------------------------------

    def _schedule(self) -> None:
        parts = self.parts
        if parts is None or self._timer is None:
            return
        now = self.clock.now()
        recorded = self.not_before
        if recorded is not None and self._clock_is_behind(now, recorded):
            # Look again when the clock should have passed the recorded time (at least every hour).
            self._scheduled = None
            self._timer.start(int(min(MAX_TIMER_MS, max(1000, math.ceil(
                self.clock.real_seconds_until(recorded) * 1000) + 50))))
            return
        offset = timedelta(seconds=self.options.wake_offset_s)
        minute = schedule.minute_to_schedule(parts.calendar, now, self.options.wake_offset_s, self._last_run,
                                             self._catch_up)
        wake = minute + offset
        if self.skip_closed_hours and isinstance(self.clock, SimClock) and wake - now > timedelta(minutes=5):
            # Sim mode: nobody wants to wait for a simulated night; land just before the open.
            self.clock.jump_to(minute - timedelta(seconds=1))
            self.publisher.market(self._running()[1].market_status())
            now = self.clock.now()
        self._scheduled = minute
        delay_ms = min(MAX_TIMER_MS, max(0, math.ceil(self.clock.real_seconds_until(wake) * 1000)))
        self._timer.start(int(delay_ms))
        if self.evening is not None:
            self.evening.rearm()  # after a sim jump over the night too

    def _count_missed(self, minute: datetime) -> None:
        """Record the session minutes between the last cycle and ``minute`` that got no cycle."""
        calendar = self._running()[0].calendar
        missed = schedule.missed_minutes(calendar, self._last_run, minute)
        if missed and self._last_run is not None:
            self.totals["missed"] += missed
            log.warning("%d minute(s) from %s got no cycle", missed,
                        utc_text(schedule.following_minute(calendar, self._last_run)))
        self._last_run = minute

    def _clock_is_behind(self, now: datetime, recorded: datetime) -> bool:
        """True (and said once on the wall) while ``now`` is before ``recorded`` (the newest stored bar or
        the last cycle): trading then could send a decision for a minute already traded, on bars from its
        future."""
        if now >= recorded:
            if self.waiting_for_clock:
                self.waiting_for_clock = False
                log.warning("the clock reads %s, past %s again: trading resumes", utc_text(now),
                            utc_text(recorded))
                self.publisher.notice(Notice("info", "the clock is right again: trading resumes", at=now))
            return False
        if not self.waiting_for_clock:
            self.waiting_for_clock = True
            message = clock_behind_message(now, recorded)
            log.error(message)
            self.publisher.notice(Notice("error", message, at=now))
        return True

    @Slot()
    def _on_wake(self) -> None:
        parts = self.parts
        if parts is None or self.trading_stopped:
            return
        if self._scheduled is None:  # waiting for the clock: see whether it has moved past
            self._schedule()
            return
        now = self.clock.now()
        wake = schedule.on_wake(parts.calendar, now, self._scheduled, self.options.wake_offset_s, self._catch_up)
        if wake.action == "reschedule" or wake.minute is None:
            if wake.why != "early":
                log.warning("woke for %s: %s; not trading it", utc_text(self._scheduled), wake.why)
            self._schedule()
            return
        if wake.why:
            log.warning("woke for %s: %s", utc_text(self._scheduled), wake.why)
        minute = wake.minute
        wake_at = self._scheduled + timedelta(seconds=self.options.wake_offset_s)
        problem = self.watch.problem() if self.watch else None
        if problem:
            self.stop_trading(problem)
            return
        try:
            self.run_cycle(minute, scheduled_at=wake_at)
        except Exception as exc:  # noqa: BLE001 - one bad minute must not stop the terminal
            log.exception("cycle for %s failed", utc_text(minute))
            reason = storage_problem(exc)
            if reason:
                self.stop_trading(reason)
                return
            self.publisher.notice(Notice("error", f"engine error: {type(exc).__name__}: {exc}", at=now))
        self._maintain()
        if self.publisher.watch is not None:
            self.publisher.watch.check_feed()
        self._schedule()

    # --- storage safety (issue 7) ---------------------------------------------------------

    def stop_trading(self, reason: str) -> None:
        """Stop running cycles (so no further order is sent) because nothing can be recorded.

        Fills already at the broker stay there; the journal rows that are not final are reconciled by
        ``reconcile_at_start`` once the disk is fixed and the app restarted. The UI stays up.
        """
        if self.trading_stopped:
            return
        self.trading_stopped = reason
        if self._timer:
            self._timer.stop()
        log.error("trading stopped: %s", reason)
        self.publisher.notice(stopped_notice(reason, at=self.clock.now()))

    def _retry_broker_reconciliation(self) -> None:
        """The broker-side pass again (after a failed start, or the day's); its notices once it worked."""
        parts, _ = self._running()
        again = parts.reconcile_with_broker()
        if not again.checked:
            if self.broker_unchecked:
                log.warning("not trading yet: the broker's orders could not be listed")
            return  # the daily pass tries again next minute; nothing depends on it today
        if self.broker_unchecked:
            log.info("broker reconciliation done after the start; trading")
        self.broker_unchecked = False
        self._reconciled_on = self.clock.now().date()
        for notice in again.notices:
            self.publisher.notice(notice)

    def _maintain(self) -> None:
        """Between cycles: today's system.db backup when due (a failure is reported, never fatal), and
        the day's pruning of old simulated bars."""
        if self.backup is None:
            return
        result = self.backup.run_if_due()
        if result is not None and result.damaged:
            self.stop_trading(result.damaged)
        elif result is not None and result.error:
            self.publisher.notice(Notice("error", f"daily backup failed: {result.error}", at=self.clock.now()))
        if self.sim_prune is not None and self.sim_prune.run_if_due() is not None:
            self._checkpoint_ledger()  # once a day too: a power cut skips the one at stop

    def run_cycle(self, minute: datetime, scheduled_at: datetime | None = None) -> CycleReport:
        """Poll the feed, run the trading cycle for ``minute`` and publish the results."""
        parts, service = self._running()
        started = self.clock.now()
        t0 = time.perf_counter()
        self._sync_symbols()
        bars = parts.feed.poll(started)
        if bars:
            self.publisher.bars(tuple(bars))
        self._count_missed(minute)
        if self.broker_unchecked:
            self._retry_broker_reconciliation()
        elif minute.date() != self._reconciled_on:
            # Once a day, so that the point a restart lists from stays near and the start stays quick.
            self._retry_broker_reconciliation()
        result = CycleResult(minute) if self.broker_unchecked else parts.cycle.run_minute(minute)
        duration_ms = (time.perf_counter() - t0) * 1000
        report = CycleReport(minute=minute, scheduled_at=scheduled_at or started, started_at=started,
                             duration_ms=duration_ms, instances_run=len(result.outcomes),
                             orders=result.orders, refused=len(result.refused), faults=len(result.faults))
        self.reports.append(report)
        del self.reports[:-500]
        self.totals["cycles_run"] += 1
        late_s = (started - report.scheduled_at).total_seconds()
        self.totals["late_max_s"] = max(self.totals["late_max_s"], round(late_s, 3))
        if late_s > 1.0:
            self.totals["late_1s"] += 1
            log.info("cycle for %s started %.1f s late (took %.0f ms)", utc_text(minute), late_s, duration_ms)
        self.totals["refused"] += len(result.refused)
        parts.system.set_config(LAST_CYCLE_KEY, json.dumps({
            "minute": utc_text(minute), "started": utc_text(started), "duration_ms": round(duration_ms, 1),
            "wall": utc_text(utc_now()),  # real time, even in sim: `autotrader restore` sees a running kiosk
            "orders": result.orders, "refused": len(result.refused), "faults": len(result.faults),
            **self.totals}))
        for outcome in result.faults:
            self.publisher.notice(Notice("fault", outcome.reason or "fault", outcome.instance_id, started))
        for outcome in result.refused:
            self.publisher.notice(Notice("refused", outcome.reason or "refused", outcome.instance_id, started))
        # The broker's cash changes only with a fill: a quiet minute reuses the last figure a while.
        service.publish_all(fresh_cash=bool(result.fills or result.orders))
        self.publisher.cycle_done(report)
        return report

    def _sync_symbols(self, initial: bool = False) -> None:
        parts = self._running()[0]
        symbols = frozenset(inst.ticker for inst in parts.system.all_instances("running"))
        # A stopped card's last order (e.g. its liquidation) still needs its symbol's bars to fill.
        symbols |= {order.symbol for order in parts.journal.open_orders()}
        if symbols == self._symbols and not initial:
            return
        added = symbols - self._symbols
        self._symbols = symbols
        parts.feed.set_symbols(symbols)
        if added:
            parts.feed.ensure_ready(sorted(added), self.clock.now())
        log.info("symbols: %s", " ".join(sorted(symbols)) or "none")  # the set the live stream must carry
        self.publisher.symbols(symbols)
