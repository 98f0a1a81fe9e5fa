"""The engine's start-up sequence, in order, on the engine thread.

1. Check the data folder's files (a damaged system.db refuses to trade: raises).
2. Build the mode's parts (``wiring.EngineParts.build``: stores, broker, journal, feed, cycle, workers).
3. Reconcile: the journal's open rows, then the broker's own order list, then positions.
4. Set up the daily chores (backup, file watch, pruning of old simulated bars) and the clock guard.

``open_engine`` returns everything started, or raises with the parts closed again; the orchestrator
then publishes the cards and schedules the first minute. ``host/thread.py`` runs all of it on the
engine QThread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from app.engine.events import Notice
from app.engine.host.alerts import AlertWatch
from app.engine.host.service import EngineService
from app.engine.host.signals import QtPublisher
from app.engine.host.wiring import EngineOptions, EngineParts
from app.engine.marketdata.clock import Clock
from app.engine.minute.reconcile import BrokerReconciliation
from app.engine.system.data_folder import DataPaths
from app.engine.system.maintenance import (DailyBackup, DailySimPrune, SystemFileWatch, check_at_start,
                                           recorded_until)
from app.engine.system.settings import Settings

log = logging.getLogger("autotrader.engine.orchestrator")


@dataclass
class StartedEngine:
    """What a completed start hands to the orchestrator."""

    parts: EngineParts
    service: EngineService
    reconciled: BrokerReconciliation
    notices: list[Notice]  # from the file check and reconciliation, to show once the cards are up
    not_before: datetime | None  # the newest recorded bar or cycle: no trading while the clock is behind it
    backup: DailyBackup
    watch: SystemFileWatch
    sim_prune: DailySimPrune


def open_engine(settings: Settings, clock: Clock, options: EngineOptions, publisher: QtPublisher,
                parts_factory: Callable[[], EngineParts] | None = None) -> StartedEngine:
    """Check, build and reconcile (steps 1-4 above); on failure the parts built so far are closed."""
    notices: list[Notice] = []
    if parts_factory is None:
        # Before anything opens the files.
        notices = check_at_start(DataPaths.for_folder(settings.data_dir()))
    parts = parts_factory() if parts_factory else EngineParts.build(settings, clock=clock, options=options)
    try:
        service = EngineService(parts, publisher)
        publisher.watch = alert_watch(parts)
        reconciled = parts.reconcile_at_start()
        if reconciled.fills:
            log.info("reconciled %d fill(s) left unrecorded by the last run", len(reconciled.fills))
        notices.extend(reconciled.notices)
        return StartedEngine(
            parts=parts, service=service, reconciled=reconciled, notices=notices,
            not_before=recorded_until(parts.system, parts.market),
            backup=DailyBackup(parts.system, parts.paths.backup_dir, mode=parts.mode),
            watch=SystemFileWatch(parts.system.path),
            # On the engine's clock: simulated bars carry simulated time.
            sim_prune=DailySimPrune(parts.market, settings.sim_bars_keep_days, now=clock.now),
        )
    except BaseException:
        publisher.watch = None
        parts.close()
        raise


def alert_watch(parts: EngineParts) -> AlertWatch | None:
    """The off-the-wall alerts (AUTOTRADER_NOTIFY), or None when no notification URL is set."""
    if not parts.notifier.enabled:
        return None
    s = parts.settings
    return AlertWatch(parts.notifier, mode=parts.mode, feed_down_min=s.notify_feed_min, fills=s.notify_fills,
                      card_loss_limit=s.card_loss_limit, account_loss_limit=s.account_loss_limit)
