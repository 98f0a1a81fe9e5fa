"""Building one mode's engine objects on the thread that will own them (SQLite connections are per thread)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from app.engine.plugins.loader import AlgorithmLoadError, default_dirs
from app.engine.plugins.pool import WorkerPool
from app.engine.plugins.runner import GuardedRunner
from app.engine.brokers.protocol import Broker
from app.engine.marketdata.clock import Clock, RealClock
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.marketdata.feed import MarketFeed
from app.engine.sim.feed import SimFeed
from app.engine.minute.journal import OrderJournal
from app.engine.minute.reconcile import BrokerReconciler, BrokerReconciliation
from app.engine.system.notify import Notifier
from app.engine.system.pin import PinGuard
from app.engine.system.data_folder import DataPaths, open_market_store, open_system_store
from app.engine.system.settings import Settings
from app.engine.minute.cycle import TradingCycle
from app.storage.market_store import MarketStore
from app.storage.system_store import SystemStore

log = logging.getLogger("autotrader.engine")

SIM_BOOK_FILE = "sim_broker.db"


@dataclass
class EngineOptions:
    """Tunables of one engine (defaults are the product's)."""

    time_budget_s: float = 5.0
    wake_offset_s: float = 2.0
    fill_wait_s: float | None = None  # None: 0 for sim (fills at next bar), 5 s for Alpaca: one wait per minute
    order_timeout_min: float = 5.0  # an order still open this long after it was sent is canceled (0: never)
    sim_starting_cash: Decimal = Decimal("100000")
    sim_slippage_bps: float = 0.0
    sim_seed: int = 0
    algorithm_workers: int = 2  # worker processes for the cards' algorithms; 0 runs them in-process
    worker_memory_mb: int | None = None  # None: the setting AUTOTRADER_WORKER_MEMORY_MB (default 512)
    algorithm_start_limit_s: float = 30.0  # importing and constructing an algorithm at start or add


@dataclass
class EngineParts:
    """Everything one engine thread owns: stores, broker, journal, feed, cycle, PIN guard."""

    mode: str
    settings: Settings
    paths: DataPaths
    clock: Clock
    calendar: MarketCalendar
    system: SystemStore
    market: MarketStore
    broker: Broker
    journal: OrderJournal
    feed: MarketFeed
    cycle: TradingCycle
    pin: PinGuard
    runner: GuardedRunner | WorkerPool
    algorithm_dirs: list[Path]
    options: EngineOptions = field(default_factory=EngineOptions)
    _closers: list = field(default_factory=list)
    notifier: Notifier = field(default_factory=lambda: Notifier(()))  # alerts off the wall (AUTOTRADER_NOTIFY)

    @classmethod
    def build(cls, settings: Settings, *, clock: Clock | None = None, paths: DataPaths | None = None,
              options: EngineOptions | None = None, broker: Broker | None = None) -> "EngineParts":
        """Open the mode's stores and broker on the calling thread."""
        options = options or EngineOptions()
        clock = clock or RealClock()
        mode = settings.mode
        paths = (paths or DataPaths.for_folder(settings.data_dir(mode))).create()
        calendar = MarketCalendar()
        system = open_system_store(paths, now=clock.now)
        market = open_market_store(paths, calendar)
        closers: list = [system.close, market.close]
        if mode == "sim":
            from app.engine.sim.broker import SimBroker
            from app.engine.sim.market import SimMarket
            from app.storage.sim_book_store import SimBookStore
            sim_market = SimMarket(calendar, market, seed=options.sim_seed)
            feed: MarketFeed = SimFeed(sim_market)
            if broker is None:
                book = SimBookStore(paths.root / SIM_BOOK_FILE, starting_cash=options.sim_starting_cash)
                closers.append(book.close)
                broker = SimBroker(book, market, calendar, clock.now, slippage_bps=options.sim_slippage_bps)
            fill_wait = 0.0 if options.fill_wait_s is None else options.fill_wait_s
        else:
            from app.engine.alpaca.broker import AlpacaBroker
            from app.engine.alpaca.feed import AlpacaFeed
            from app.engine.alpaca.sdk import check_sdk
            check_sdk()  # an untested alpaca-py stops here with one sentence, not later in silence
            if broker is None:
                broker = AlpacaBroker.from_settings(settings)
            feed = AlpacaFeed.from_settings(settings, market, calendar)
            fill_wait = 5.0 if options.fill_wait_s is None else options.fill_wait_s
        journal = OrderJournal(system, broker, clock.now, stale_after=timedelta(minutes=options.order_timeout_min)
                               if options.order_timeout_min > 0 else None)
        closers.append(journal.close)
        runner: GuardedRunner | WorkerPool
        if options.algorithm_workers > 0:
            memory = options.worker_memory_mb or settings.worker_memory_mb
            runner = WorkerPool(market_path=paths.stocks_db, system_path=paths.system_db,
                                time_budget_s=options.time_budget_s, workers=options.algorithm_workers,
                                memory_mb=memory, start_limit_s=options.algorithm_start_limit_s)
        else:
            runner = GuardedRunner(time_budget_s=options.time_budget_s)
        closers.append(runner.close)
        dirs = default_dirs(settings.algorithm_dirs)
        cycle = TradingCycle(system=system, market=market, broker=broker, journal=journal, calendar=calendar,
                             runner=runner, algorithm_dirs=dirs, fill_wait_s=fill_wait)
        closers.append(cycle.context.close)
        notifier = Notifier(settings.notify_urls)
        closers.append(notifier.close)
        log.info("engine ready: mode %s, data in %s", mode.upper(), paths.root)
        return cls(mode=mode, settings=settings, paths=paths, clock=clock, calendar=calendar, system=system,
                   market=market, broker=broker, journal=journal, feed=feed, cycle=cycle,
                   pin=PinGuard(system), runner=runner, algorithm_dirs=dirs, options=options,
                   _closers=closers, notifier=notifier)

    def reconcile_at_start(self) -> BrokerReconciliation:
        """Before the first cycle: resolve the journal's open rows, then book from the broker's own list
        the fills of ours the journal lacks (a power cut), then compare positions. Fills of both passes."""
        self.runner.warm()  # worker processes up before the first minute, not inside its budget
        for card, reason in self.cycle.breaker.at_start().items():
            log.warning("card %d faulted at start: %s", card, reason)
            self.system.set_faulted(card, reason)
        self._prepare_cards()
        journal_fills = self.journal.reconcile_at_start()
        result = self.reconcile_with_broker()
        result.fills[:0] = journal_fills
        return result

    def _prepare_cards(self) -> None:
        """Import and construct the running cards' algorithms in the workers before the first minute
        (under the start limit, not a minute's budget); a card that cannot start is faulted now."""
        cards = {inst.id: inst for inst in self.system.all_instances("running") if not inst.faulted_reason}
        handles = []
        for inst in cards.values():
            try:
                handles.append(self.cycle.algorithm_for(inst))
            except (AlgorithmLoadError, ValueError):
                continue  # in-process runner: the first minute faults it with its reason
        for card, fault in self.runner.prepare(handles).items():
            self.cycle.fault(cards[card], fault.reason)

    def reconcile_with_broker(self) -> BrokerReconciliation:
        """The broker-side pass alone (``checked`` False when the broker could not be asked)."""
        return BrokerReconciler(self.system, self.broker, self.journal, self.clock.now).run(
            lambda: {i: h.shares for i, h in self.cycle.holdings(self.system.all_instances()).items()})

    def close(self) -> None:
        """Close connections and worker threads (reverse order of opening)."""
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing must go on
                log.exception("error while closing")
        self._closers.clear()
