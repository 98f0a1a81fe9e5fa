"""One market minute of work: run every running instance, guard, journal and place its orders.

Qt-free so that the orchestrator, the benchmark and the tests drive exactly the same code.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.engine.plugins.breaker import CrashBreaker
from app.engine.plugins.loader import AlgorithmLoadError
from app.engine.plugins.runner import AlgorithmFault, AlgorithmRunner, Decision
from app.engine.brokers.protocol import AccountRules, Broker, BrokerError
from app.engine.portfolio.ledger import CardLedger, Holding
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.marketdata.minute_reads import MinuteBars
from app.engine.minute.journal import Fill, OrderJournal
from app.engine.minute.netting import CardOrder
from app.engine.trading.guard import OrderRequest, refusal
from app.storage.market_store import MarketStore
from app.storage.records import Bar, InstanceRecord, TransactionRecord
from app.storage.system_store import SystemStore
from app.storage.timefmt import to_epoch, utc_text

log = logging.getLogger("autotrader.engine.cycle")

HALT_KEY = "trading_halted"


class StoreContext:
    """The data an algorithm may see (AlgorithmContext), read through a small pool of connections.

    Algorithms run in the runner's worker threads, which come and go (a slow worker is replaced),
    so connections are pooled rather than kept per thread: each call borrows a pair, uses it on its
    thread alone and gives it back. At most ``keep`` idle pairs are kept (the runner's worker
    count); a pair opened during a burst of replaced workers is closed when it comes back, so
    neither files nor page caches pile up. Within a minute (``begin_minute``) the cards on a ticker
    share one read of its bars and the ledger is not looked at again: the cycle refreshed it.
    """

    def __init__(self, market_path: Path, system_path: Path, ledger: CardLedger | None = None,
                 keep: int = 8):
        self._market_path = Path(market_path)
        self._system_path = Path(system_path)
        self._ledger = ledger or CardLedger()
        self._keep = keep
        self._pool: queue.SimpleQueue[tuple[MarketStore, SystemStore]] = queue.SimpleQueue()
        self._ledger.read_with(self._system)  # the ledger pages a card's fills in through this pool
        self.bars = MinuteBars(self._read_last_bars)
        self._fresh = False  # the ledger was refreshed for the minute being run

    @contextmanager
    def _system(self) -> Iterator[SystemStore]:
        with self._stores() as (_, system):
            yield system

    @contextmanager
    def _stores(self) -> Iterator[tuple[MarketStore, SystemStore]]:
        try:
            stores = self._pool.get_nowait()
        except queue.Empty:
            stores = (MarketStore(self._market_path, shared=True), SystemStore(self._system_path, shared=True))
        try:
            yield stores
        finally:
            if self._pool.qsize() < self._keep:
                self._pool.put(stores)
            else:
                stores[0].close()
                stores[1].close()

    def begin_minute(self, minute_ts: int) -> None:
        """The minute's calls follow; the ledger was just refreshed by the caller."""
        self.bars.begin_minute(minute_ts)
        self._fresh = self._ledger.started

    def end_minute(self) -> None:
        """The minute's calls are over: reads go to the stores again."""
        self._fresh = False
        self.bars.end_minute()

    def _read_last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        with self._stores() as (market, _):
            return market.last_bars(symbol, n, before_ts)

    def last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        """Last ``n`` stored bars strictly before ``before_ts``."""
        return self.bars.last_bars(symbol, n, before_ts)

    def bars_between(self, symbol: str, start_ts: int, end_ts: int) -> list[Bar]:
        """Stored bars in the closed range."""
        with self._stores() as (market, _):
            return market.bars_between(symbol, start_ts, end_ts)

    def transactions(self, algo_id: int) -> Sequence[TransactionRecord]:
        """This instance's transactions, oldest first (read a page at a time as they are walked)."""
        return self.holding(algo_id).transactions

    def holding(self, algo_id: int) -> Holding:
        """This instance's transactions with its share and invested totals (no re-summing)."""
        if self._fresh:
            return self._ledger.held((algo_id,))[algo_id]
        with self._stores() as (_, system):
            return self._ledger.holding(system, algo_id)

    def close(self) -> None:
        """Close the pooled connections (engine shutdown)."""
        while True:
            try:
                market, system = self._pool.get_nowait()
            except queue.Empty:
                return
            market.close()
            system.close()


@dataclass(frozen=True)
class Outcome:
    """What happened to one instance this minute."""

    instance_id: int
    action: str  # 'hold' | 'buy' | 'sell' | 'fault' | 'refused' | 'order-problem'
    shares: int = 0
    reason: str | None = None


@dataclass
class CycleResult:
    """A minute's work: outcomes per instance and the fills recorded meanwhile."""

    minute: datetime
    outcomes: list[Outcome] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    orders: int = 0

    @property
    def faults(self) -> list[Outcome]:
        """Instances that faulted this minute."""
        return [o for o in self.outcomes if o.action == "fault"]

    @property
    def refused(self) -> list[Outcome]:
        """Orders the risk guard refused, the broker refused or closed without a fill."""
        return [o for o in self.outcomes if o.action in ("refused", "order-problem")]


class TradingCycle:
    """Runs the minute cycle against one set of stores, one broker and one journal."""

    def __init__(self, *, system: SystemStore, market: MarketStore, broker: Broker, journal: OrderJournal,
                 calendar: MarketCalendar, runner: AlgorithmRunner,
                 algorithm_dirs: Sequence[Path] | None = None, fill_wait_s: float = 0.0,
                 check_broker_position: bool = True):
        self.system = system
        self.market = market
        self.broker = broker
        self.journal = journal
        self.calendar = calendar
        self.runner = runner
        self.algorithm_dirs = list(algorithm_dirs) if algorithm_dirs else None
        self.fill_wait_s = fill_wait_s
        self.check_broker_position = check_broker_position
        self.ledger = CardLedger()  # every card's fills and totals, read incrementally
        self.context = StoreContext(market.path, system.path, self.ledger, keep=runner.worker_count)
        self.breaker = CrashBreaker(system)
        self._algos: dict[int, Any] = {}  # an algorithm object or a worker's handle (runner.load)
        self.refused: dict[int, str] = {}  # latest refusal per instance, shown on its card
        self._rules: tuple[datetime, AccountRules | None] | None = None  # read once per minute, if needed
        self._positions: dict[str, int] | None = None  # the broker's positions, read once per minute if needed
        self._positions_failed = False
        self._by_ticker: dict[str, list[InstanceRecord]] | None = None  # every instance, read once per minute
        self._bought: dict[str, bool] = {}  # per ticker, this minute: bought in its session

    # --- instances ---------------------------------------------------------------------

    def halted(self) -> bool:
        """The account-wide halt switch."""
        return self.system.get_config(HALT_KEY) == "1"

    def algorithm_for(self, inst: InstanceRecord) -> Any:
        """The live algorithm of an instance (its object, or its handle in a worker), created on first
        use and then reused."""
        algo = self._algos.get(inst.id)
        if algo is None:
            algo = self.runner.load(inst.id, inst.algorithm_type, inst.ticker, inst.initial_capital,
                                    json.loads(inst.params_json or "{}"), self.algorithm_dirs,
                                    context=self.context)
            self._algos[inst.id] = algo
        return algo

    def forget(self, instance_id: int) -> None:
        """Drop a cached algorithm object (stopped or resumed instance)."""
        self._algos.pop(instance_id, None)
        self.runner.discard(instance_id)
        self.refused.pop(instance_id, None)

    def fault(self, inst: InstanceRecord, reason: str) -> Outcome:
        """Stop calling an instance until it is resumed; the reason shows on its card."""
        log.warning("instance %d (%s) faulted: %s", inst.id, inst.display_name, reason)
        self.system.set_faulted(inst.id, reason)
        self.forget(inst.id)
        return Outcome(inst.id, "fault", reason=reason)

    # --- the minute --------------------------------------------------------------------

    def run_minute(self, minute: datetime, instances: Sequence[InstanceRecord] | None = None) -> CycleResult:
        """Decide and trade for ``minute`` (bars up to minute − 1 are visible to algorithms)."""
        result = CycleResult(minute)
        result.fills.extend(self.journal.settle(0))
        if instances is None:
            instances = self.system.all_instances("running")
        live_ids = {inst.id for inst in instances}
        for stale in [i for i in self._algos if i not in live_ids]:
            self.forget(stale)

        batch: list[tuple[Any, datetime, int]] = []
        batch_instances: list[InstanceRecord] = []
        for inst in instances:
            if inst.faulted_reason:
                continue
            try:
                algo = self.algorithm_for(inst)
            except AlgorithmLoadError as exc:  # its text already says the file cannot be loaded
                result.outcomes.append(self.fault(inst, str(exc)))
                continue
            except ValueError as exc:  # stored parameters the algorithm no longer accepts
                result.outcomes.append(self.fault(inst, f"cannot start the algorithm: {exc}"))
                continue
            batch.append((algo, minute, inst.id))
            batch_instances.append(inst)

        decisions = []
        if batch:
            # One look at system.db for the whole minute: the cards' calls read the ledger as it is now.
            self.ledger.refresh(self.system)
            self.context.begin_minute(to_epoch(minute))
            try:
                with self.breaker.calls([inst.id for inst in batch_instances]):
                    decisions = self.runner.run_many(batch)
            finally:
                self.context.end_minute()
        market_open = self.calendar.is_open(minute)
        halted = self.halted()
        minute_ts = to_epoch(minute)
        prices: dict[str, Decimal | None] = {}
        # One open order per card at a time: read the open journal rows once per minute.
        busy = {order.algorithm_id for order in self.journal.open_orders()} if decisions else set()
        self._positions = None
        self._by_ticker, self._bought = None, {}
        wanted: list[CardOrder] = []
        for inst, decision in zip(batch_instances, decisions):
            if isinstance(decision, AlgorithmFault):
                result.outcomes.append(self.fault(inst, decision.reason))
                continue
            if decision.action == "hold":
                result.outcomes.append(Outcome(inst.id, "hold"))
                continue
            if inst.ticker not in prices:
                bars = self.market.last_bars(inst.ticker, 1, minute_ts)
                prices[inst.ticker] = Decimal(str(bars[-1].close)) if bars else None
            outcome = self._check(inst, decision, minute, prices[inst.ticker], market_open, halted, busy)
            if outcome is None:
                wanted.append(CardOrder(inst.id, inst.ticker, decision.action, decision.shares))
            else:
                result.outcomes.append(outcome)
        # All of the minute's orders leave together: netted per symbol, sent concurrently.
        problems = self.journal.place_many(wanted, minute, prices) if wanted else {}
        for order in wanted:
            problem = problems.get(order.card)
            if problem:
                self.refused[order.card] = problem
                result.outcomes.append(Outcome(order.card, "order-problem", order.shares, problem))
            else:
                self.refused.pop(order.card, None)
                result.outcomes.append(Outcome(order.card, order.side, order.shares))
                result.orders += 1
        # One bounded wait for every open order of the minute, however many.
        if result.orders and self.fill_wait_s > 0:
            result.fills.extend(self.journal.settle(self.fill_wait_s))
        for instance_id, sentence in self.journal.drain_unfilled():
            self.refused[instance_id] = sentence
            result.outcomes.append(Outcome(instance_id, "order-problem", reason=sentence))
        return result

    def _broker_position(self, symbol: str) -> int | None:
        """The account's shares of ``symbol``: all positions read once per minute (None: unreadable)."""
        if self._positions is None:
            try:
                self._positions = self.broker.positions()
            except BrokerError as exc:
                log.warning("position check failed: %s", exc)
                self._positions = {}
                self._positions_failed = True
                return None
            self._positions_failed = False
        return None if self._positions_failed else self._positions.get(symbol, 0)

    def _check(self, inst: InstanceRecord, decision: Decision, minute: datetime, price: Decimal | None,
               market_open: bool, halted: bool, busy: set[int]) -> Outcome | None:
        """The risk guard for one card's decision: a refusal, or None when the order may go."""
        order_open = inst.id in busy
        figures = self.holding(inst.id).figures(inst.initial_capital, price)
        broker_position = None
        all_shares = 0
        # The guard refuses a card with an open order first: skip the broker and account reads then.
        selling = decision.action == "sell" and not order_open
        if selling and self.check_broker_position:
            broker_position = self._broker_position(inst.ticker)
            if broker_position is not None and decision.shares > broker_position:
                # Only needed to explain the refusal; reading every card is too slow for each sell.
                all_shares = self._shares_all_instances(inst.ticker)
        day_trade = selling and self._bought_this_session(inst.ticker, minute)
        req = OrderRequest(side=decision.action, shares=decision.shares, price=price,
                           instance_uninvested=figures.uninvested, instance_shares=figures.shares,
                           market_open=market_open, halted=halted, order_open=order_open,
                           symbol_shares_all_instances=all_shares, broker_position=broker_position,
                           completes_day_trade=day_trade,
                           account=self._account_rules(minute) if day_trade else None)
        reason = refusal(req)
        if reason:
            log.info("refused %s %d %s for instance %d: %s", decision.action, decision.shares,
                     inst.ticker, inst.id, reason)
            self.refused[inst.id] = reason
            return Outcome(inst.id, "refused", decision.shares, reason)
        return None

    def holding(self, instance_id: int) -> Holding:
        """An instance's fills and totals as recorded now (read on the engine thread)."""
        return self.ledger.holding(self.system, instance_id)

    def holdings(self, instances: Iterable[InstanceRecord]) -> dict[int, Holding]:
        """Fills and totals of several instances after one look at the database (engine thread)."""
        return self.ledger.holdings(self.system, (inst.id for inst in instances))

    def _bought_this_session(self, ticker: str, minute: datetime) -> bool:
        """Whether any card bought ``ticker`` in ``minute``'s session (its UTC date: sessions never
        cross midnight UTC), so that selling it now completes a day trade."""
        if ticker in self._bought:  # once per ticker a minute: no fill is recorded while it is checked
            return self._bought[ticker]
        day = utc_text(minute)[:10]
        bought = False
        for holding in self.holdings(self._instances_on(ticker)).values():
            for tx in reversed(holding.transactions):  # oldest first: today's fills are at the end
                if tx.timestamp[:10] != day:
                    break
                if tx.type == "buy":
                    bought = True
                    break
            if bought:
                break
        self._bought[ticker] = bought
        return bought

    def _instances_on(self, ticker: str) -> list[InstanceRecord]:
        """Every instance on ``ticker``, stopped ones too (all instances read once per minute)."""
        if self._by_ticker is None:
            by_ticker: dict[str, list[InstanceRecord]] = {}
            for inst in self.system.all_instances():
                by_ticker.setdefault(inst.ticker, []).append(inst)
            self._by_ticker = by_ticker
        return self._by_ticker.get(ticker, [])

    def _account_rules(self, minute: datetime) -> AccountRules | None:
        """The account's day-trade facts, read from the broker at most once per minute (None if
        it cannot be read: the broker then has the last word itself)."""
        if self._rules is None or self._rules[0] != minute:
            try:
                rules: AccountRules | None = self.broker.account_rules()
            except BrokerError as exc:
                log.warning("could not read the account's day-trade figures: %s", exc)
                rules = None
            self._rules = (minute, rules)
        return self._rules[1]

    def _shares_all_instances(self, ticker: str) -> int:
        return sum(holding.shares for holding in self.holdings(self._instances_on(ticker)).values())
