"""What the seed's Flask API did, as plain method calls on the engine thread.

The kiosk calls these through :class:`~app.engine.host.client.EngineClient`; the headless CLI
(``autotrader add/stop/status``) calls them directly in its own process. Every refusal is a
:class:`ServiceError` whose text says what to fix, and a refused request writes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Protocol

from app.engine.host.evening import read_day_check
from app.engine.algorithm_api import AlgorithmParamError
from app.engine.plugins.loader import AlgorithmInfo, AlgorithmLoadError, discover
from app.engine.brokers.protocol import BrokerError, BrokerUnavailable, InvalidSymbol
from app.engine.portfolio.cards import CardParts, build_cards
from app.engine.portfolio.ledger import Holding
from app.engine.portfolio.chart import card_chart
from app.engine.host.client import ServiceError
from app.engine.host.wiring import EngineParts
from app.engine.events import (AccountSummary, CardChart, CardSnapshot, MarketStatus, Notice, StoppedCard,
                               StreamStatus, WallInfo)
from app.engine.system.maintenance import clock_behind_message, health_report, read_last_cycle, recorded_until
from app.engine.portfolio.money import available_cash, format_money, realised_pnl
from app.engine.system.pin import PinError, PinResult
from app.engine.trading.guard import OrderRequest, day_trade_limited, describe_day_trading, refusal
from app.engine.minute.cycle import HALT_KEY
from app.storage.records import TransactionRecord
from app.storage.timefmt import parse_utc_text, utc_text

if TYPE_CHECKING:  # imported when the first backtest is asked for: keeps the start-up light
    from app.engine.backtest.jobs import BacktestJobs

log = logging.getLogger("autotrader.engine.service")

STREAM_STATE_KEY = "stream_state"  # the running kiosk's live-bar stream, for `autotrader status`
MAX_CAPITAL = Decimal("100000000")
CANCEL_WAIT_S = 5.0  # how long a stop waits for the broker to close a canceled order
CENT = Decimal("0.01")
CASH_EVERY_S = 60.0  # a quiet minute's header reuses the broker cash read up to this long ago


class Publisher(Protocol):
    """Where state changes go (the Qt signals in the kiosk; nowhere for the CLI)."""

    def cards(self, cards: tuple[CardSnapshot, ...]) -> None: ...
    def resend_cards(self) -> None: ...  # the next ``cards`` sends every card, changed or not
    def market(self, status: MarketStatus) -> None: ...
    def stream(self, status: StreamStatus) -> None: ...
    def account(self, summary: AccountSummary) -> None: ...
    def notice(self, notice: Notice) -> None: ...


class NullPublisher:
    """Publishes nothing (headless use)."""

    def cards(self, cards): pass
    def resend_cards(self): pass
    def market(self, status): pass
    def stream(self, status): pass
    def account(self, summary): pass
    def notice(self, notice): pass


@dataclass(frozen=True)
class StopResult:
    """What stopping an instance did, in words."""

    instance_id: int
    message: str


class EngineService:
    """The engine's public operations over one mode's stores and broker (engine thread only)."""

    def __init__(self, parts: EngineParts, publisher: Publisher | None = None, *, prepare_feed: bool = True):
        # prepare_feed False (an admin command beside a running engine): a new card's history is left to
        # the engine, which prepares every new symbol at its next cycle, so two processes never generate
        # or fetch the same bars at once.
        self.parts = parts
        self.prepare_feed = prepare_feed
        self.publisher = publisher or NullPublisher()
        self.mode = parts.mode
        self._catalogue: tuple[AlgorithmInfo, ...] | None = None
        self._last_cash: Decimal | None = None
        self._last_cash_error: str | None = None
        self._cash_read_at: float | None = None  # time.monotonic() of the last header read
        self._backtest_jobs: BacktestJobs | None = None  # made on the first backtest request
        self._card_parts = CardParts()  # what one publish's cards lend the next
        self._label_cache: dict[tuple[str, str], tuple[str, str]] = {}  # (type, params) -> labels
        self._stopped: tuple[tuple[tuple[int, Holding], ...], Decimal] | None = None  # stopped cards' P&L

    def close(self) -> None:
        """Cancel running backtests (they run on their own daemon threads)."""
        if self._backtest_jobs is not None:
            self._backtest_jobs.cancel_all()

    # --- PIN ---------------------------------------------------------------------------

    def verify_pin(self, pin: str) -> PinResult:
        """Check the PIN (lockout after 5 wrong tries, persisted)."""
        return self.parts.pin.verify(pin)

    def pin_is_default(self) -> bool:
        """True while the PIN is still the factory 2020."""
        return self.parts.pin.is_default()

    def change_pin(self, new_pin: str) -> None:
        """Set a new 4-8 digit PIN."""
        try:
            self.parts.pin.change(new_pin)
        except PinError as exc:
            raise ServiceError(str(exc)) from None

    # --- reading -----------------------------------------------------------------------

    def available_algorithms(self, refresh: bool = False) -> tuple[AlgorithmInfo, ...]:
        """Every algorithm file found, broken ones with their error."""
        if refresh or self._catalogue is None:
            self._catalogue = tuple(discover(self.parts.algorithm_dirs))
            self._label_cache.clear()  # a changed file may word its cards differently
        return self._catalogue

    def _names(self) -> dict[str, str]:
        return {info.algorithm_type: info.name for info in self.available_algorithms() if info.ok}

    def _labels(self, instances) -> dict[int, tuple[str, str]]:
        """Instance id → (short card title, parameters in words) from each algorithm's own template."""
        infos = {info.algorithm_type: info for info in self.available_algorithms() if info.ok}
        labels = {}
        cache = self._label_cache
        for inst in instances:
            info = infos.get(inst.algorithm_type)
            if info is None:
                continue
            key = (inst.algorithm_type, inst.params_json or "{}")
            label = cache.get(key)
            if label is None:
                try:
                    given = json.loads(inst.params_json or "{}")
                except ValueError:
                    given = {}
                given = given if isinstance(given, dict) else {}
                label = cache[key] = (info.card_label(given), info.params_text(given))
            labels[inst.id] = label
        return labels

    def cards(self) -> tuple[CardSnapshot, ...]:
        """Every running instance with its card figures."""
        p = self.parts
        running = p.system.all_instances("running")
        return build_cards(p.cycle.holdings(running), p.market, p.calendar, p.clock.now(), running,
                           self._names(), p.cycle.refused, self._labels(running), parts=self._card_parts)

    def market_status(self) -> MarketStatus:
        """Open/closed now and the next transitions."""
        p = self.parts
        now = p.clock.now()
        return MarketStatus(is_open=p.calendar.is_open(now), now=now,
                            next_open=p.calendar.next_open(now), next_close=p.calendar.next_close(now))

    def broker_cash(self) -> Decimal | None:
        """The broker's cash, or None (with the reason kept) when it cannot be reached."""
        try:
            self._last_cash = self.parts.broker.account_cash()
            self._last_cash_error = None
        except BrokerError as exc:
            self._last_cash_error = str(exc)
            return None
        return self._last_cash

    def day_trading(self) -> dict:
        """The account's day-trade facts for ``status``: JSON-able values and one sentence."""
        try:
            rules = self.parts.broker.account_rules()
        except BrokerError as exc:
            return {"summary": f"unknown: {exc}", "error": str(exc)}
        return {"margin": rules.margin, "equity": None if rules.equity is None else str(rules.equity),
                "pattern_day_trader": rules.pattern_day_trader, "daytrade_count": rules.daytrade_count,
                "limited": day_trade_limited(rules), "summary": describe_day_trading(rules)}

    def available_cash(self) -> Decimal:
        """Cash a new card may take: broker cash − Σ uninvested cash of running cards."""
        cash = self.broker_cash()
        if cash is None:
            raise ServiceError(f"cannot reach the broker: {self._last_cash_error}")
        return self._available_from(cash)

    def _available_from(self, cash: Decimal) -> Decimal:
        running = self.parts.system.all_instances("running")
        holdings = self.parts.cycle.holdings(running)
        return available_cash(cash, (holdings[inst.id].figures(inst.initial_capital, None).uninvested
                                     for inst in running))

    def _cash_for_header(self, fresh: bool) -> Decimal | None:
        """Broker cash for the header: asked for when ``fresh`` (something traded or changed) or when
        the last answer is older than ``CASH_EVERY_S``; otherwise the last answer. Each ask is a
        broker round trip (REST for Alpaca), which a quiet minute's publish need not pay."""
        now = time.monotonic()
        if fresh or self._cash_read_at is None or now - self._cash_read_at >= CASH_EVERY_S \
                or self._last_cash_error is not None:
            self._cash_read_at = now
            return self.broker_cash()
        return self._last_cash

    def account(self, cards: tuple[CardSnapshot, ...] | None = None, *, fresh_cash: bool = True) -> AccountSummary:
        """Header figures: mode, account value, the day's and the total P&L, available cash, halt switch.

        ``cards``: every running card as just built (built here when not given). ``fresh_cash`` False
        lets the broker's cash be the one read up to ``CASH_EVERY_S`` ago."""
        cards = self.cards() if cards is None else cards
        cash = self._cash_for_header(fresh_cash)
        positions = sum((c.shares * c.price for c in cards if c.price is not None), Decimal(0))
        return AccountSummary(mode=self.mode,
                              # The cards are every running card, their uninvested cash from the ledger now.
                              available_cash=None if cash is None else available_cash(
                                  cash, (c.uninvested for c in cards)),
                              total_pnl=sum((c.pnl for c in cards), Decimal(0)),
                              halted=self.parts.cycle.halted(), broker_error=self._last_cash_error,
                              value=None if cash is None else cash + positions,
                              day_pnl=sum((c.day_pnl for c in cards if c.day_pnl is not None), Decimal(0)),
                              stopped_pnl=self._stopped_pnl())

    def _stopped_pnl(self) -> Decimal:
        """Σ realised P&L of the stopped cards, summed again only when one of them changed (a card
        stopped, or a fill booked to one): never a walk through their fills on a quiet minute."""
        p = self.parts
        stopped = p.system.all_instances("stopped")
        holdings = p.cycle.holdings(stopped)
        key = tuple((inst.id, holdings[inst.id]) for inst in stopped)
        kept = self._stopped
        if kept is None or len(kept[0]) != len(key) or any(
                a[0] != b[0] or a[1] is not b[1] for a, b in zip(kept[0], key)):
            total = sum((realised_pnl(holdings[inst.id].transactions) for inst in stopped), Decimal(0))
            self._stopped = kept = (key, total)
        return kept[1]

    def history(self) -> tuple[StoppedCard, ...]:
        """Stopped cards with their realised P&L, the most recently stopped first."""
        p = self.parts
        stopped = p.system.all_instances("stopped")
        holdings = p.cycle.holdings(stopped)
        labels = self._labels(stopped)
        names = self._names()
        out = []
        for inst in stopped:
            holding = holdings[inst.id]
            label = labels.get(inst.id, ("", ""))[0] or names.get(inst.algorithm_type, inst.algorithm_type)
            out.append(StoppedCard(
                instance_id=inst.id, title=f"{inst.ticker} · {label}", display_name=inst.display_name,
                initial_capital=Decimal(str(inst.initial_capital)), created_at=parse_utc_text(inst.created_at),
                stopped_at=parse_utc_text(inst.stopped_at) if inst.stopped_at else None,
                trade_count=holding.trade_count, realised_pnl=realised_pnl(holding.transactions),
                shares_kept=holding.shares))
        out.sort(key=lambda c: (c.stopped_at or c.created_at, c.instance_id), reverse=True)
        return tuple(out)

    def card_chart(self, instance_id: int, sessions: int = 5) -> CardChart | None:
        """A card's price and fills over its last ``sessions`` sessions (None before any bar)."""
        p = self.parts
        inst = p.system.get_instance(instance_id)
        if inst is None:
            raise ServiceError(f"no instance with id {instance_id}")
        return card_chart(p.market, p.calendar, inst.ticker, p.cycle.holding(instance_id).transactions,
                          p.clock.now(), sessions=max(1, min(int(sessions), 20)))

    def day_check(self, instance_id: int) -> str | None:
        """The card's last evening check in one line ("Dec 01: live -$4.10 vs backtest, 2 fills, ..."),
        None before its first."""
        check = read_day_check(self.parts, instance_id)
        return None if check is None else f"{check.day:%b %d}: {check.text()}"

    def transactions(self, instance_id: int) -> tuple[TransactionRecord, ...]:
        """An instance's transactions, newest first."""
        history = self.parts.cycle.holding(instance_id).transactions
        return tuple(reversed(history[:]))  # one read of the whole history, not one per page

    # --- changing ----------------------------------------------------------------------

    def validate_ticker(self, text: str) -> str:
        """The normalised ticker if the broker knows it as active and tradable."""
        symbol = (text or "").strip().upper()
        try:
            return self.parts.broker.validate_symbol(symbol)
        except InvalidSymbol as exc:
            raise ServiceError(str(exc)) from None
        except BrokerUnavailable as exc:
            raise ServiceError(f"cannot check {symbol} right now: {exc}") from None
        except BrokerError as exc:
            raise ServiceError(f"{symbol}: {exc}") from None

    def create_instance(self, ticker: str, algorithm_type: str, initial_capital, params=None) -> int:
        """Start a card. Validates ticker, algorithm, parameters and capital; writes nothing on failure."""
        symbol = self.validate_ticker(ticker)
        try:
            capital = Decimal(str(initial_capital).replace(",", "").replace("$", "").strip())
        except InvalidOperation:
            raise ServiceError(f"capital {initial_capital!r} is not an amount of dollars") from None
        if not capital.is_finite() or capital <= 0:
            raise ServiceError("capital must be more than $0")
        if capital > MAX_CAPITAL:
            raise ServiceError(f"capital must be at most {format_money(MAX_CAPITAL)}")
        capital = capital.quantize(Decimal("0.01"))
        problem = self.parts.feed.cannot_trade(symbol)
        if problem:
            raise ServiceError(problem)
        params = dict(params or {})
        try:
            resolved = self.parts.runner.check(algorithm_type, symbol, capital, params, self.parts.algorithm_dirs)
        except AlgorithmParamError as exc:
            raise ServiceError(str(exc)) from None
        except AlgorithmLoadError as exc:
            raise ServiceError(str(exc)) from None
        cash = self.broker_cash()
        if cash is None:
            raise ServiceError(f"cannot reach the broker: {self._last_cash_error}")

        def enough_cash() -> None:
            available = self._available_from(cash)
            if capital > available:
                raise ServiceError(f"capital {format_money(capital)} is more than the "
                                   f"{format_money(available)} available")

        enough_cash()  # refuse early, before any history is fetched
        if self.prepare_feed:
            self.parts.feed.ensure_ready([symbol], self.parts.clock.now())
        # The write is the last step, and the cash check is repeated inside its transaction: a failing
        # command leaves nothing behind, and a card added meanwhile by another process counts.
        instance_id = self.parts.system.create_instance(symbol, algorithm_type, float(capital),
                                                        resolved, check=enough_cash)
        log.info("created instance %d: %s %s with %s", instance_id, symbol, algorithm_type, format_money(capital))
        self._publish_after_write()
        return instance_id

    def stop_instance(self, instance_id: int, liquidate: bool = False) -> StopResult:
        """Stop a card (soft stop) and say what happened to its orders and shares.

        Both cancel the card's open buys first (a buy that fills after the stop would leave shares
        nothing ever sells) and record how each ended (it may have filled meanwhile). Plain stop
        leaves the shares in the account; ``liquidate`` then sells what the card holds that its open
        sells do not already cover, at market, only while the market is open. A buy the broker will
        not close yet stops nothing (ServiceError; try again).
        """
        p = self.parts
        inst = p.system.get_instance(instance_id)
        if inst is None or inst.status != "running":
            raise ServiceError(f"no running instance with id {instance_id}")
        now = p.clock.now()
        if liquidate and p.cycle.holding(instance_id).shares > 0 and not p.calendar.is_open(now):
            raise ServiceError(f"the market is closed: shares can be sold from {self._opens(now)}. "
                               f"Stop without selling, or try again then")
        parts = [f"stopped {inst.display_name}"]
        parts += self._cancel_open_buys(instance_id)
        shares = p.cycle.holding(instance_id).shares
        # Shares an open sell of this card already covers must not be sold twice.
        _, selling = p.journal.reserved(instance_id, None)
        if liquidate and shares - selling > 0:
            done = "".join(f"{phrase}; " for phrase in parts[1:])  # what was canceled already
            if not p.calendar.is_open(now):
                raise ServiceError(f"{done}the market is closed: its {shares} {inst.ticker} shares can be "
                                   f"sold from {self._opens(now)}. Stop without selling, or try again then")
            shares -= selling
            # A liquidation is an order like any other: the risk guard (halt switch) applies.
            reason = refusal(OrderRequest(side="sell", shares=shares, price=None,
                                          instance_uninvested=Decimal(0), instance_shares=shares,
                                          market_open=True, halted=p.cycle.halted()))
            if reason:
                raise ServiceError(f"{done}cannot sell {shares} {inst.ticker}: {reason}. "
                                   "Stop without selling, or try again later")
            _, problem = p.journal.place(instance_id, inst.ticker, "sell", shares, now)
            if problem:
                raise ServiceError(f"{done}could not sell {shares} {inst.ticker}: {problem}")
            parts.append(f"selling {shares} {inst.ticker} at market")
        elif liquidate and selling:
            parts.append(f"its open sell of {selling} {inst.ticker} stays")
        elif shares > 0:
            parts.append(f"its {shares} {inst.ticker} shares stay in the account")
        p.system.stop_instance(instance_id)
        p.cycle.forget(instance_id)
        message = "; ".join(parts)
        log.info(message)
        self._publish_after_write()
        return StopResult(instance_id, message)

    def _opens(self, now) -> str:
        return self.parts.calendar.next_open(now).astimezone().strftime("%a %H:%M")

    def _cancel_open_buys(self, instance_id: int) -> list[str]:
        """Cancel the card's open buys and record how each ended; a phrase for each.

        Raises ServiceError if the broker cannot be asked or has not closed an order yet.
        """
        p = self.parts
        said: list[str] = []
        for order in p.journal.open_orders():
            if order.algorithm_id != instance_id or order.side != "buy":
                continue
            what = f"{order.side} of {order.shares} {order.symbol}"
            try:
                after = p.journal.cancel(order.client_order_id, CANCEL_WAIT_S)
            except BrokerError as exc:
                done = "; ".join(said) + ". " if said else ""
                raise ServiceError(f"could not cancel the open {what}: {exc}. {done}"
                                   "The card was not stopped; try again") from None
            if after is None:
                raise ServiceError(f"the broker has not closed the open {what} yet. "
                                   f"{'; '.join(said) + '. ' if said else ''}The card was not stopped; try again")
            if after.status == "failed" and not after.filled_qty:
                # Never reached the broker (or not yet: if it does, the next start books its fill).
                said.append(f"withdrew its unsent {what}")
            elif after.filled_qty >= order.shares:
                said.append(f"its {what} filled before it could be canceled")
            elif after.filled_qty > 0:
                said.append(f"canceled its open {what} after {after.filled_qty} filled")
            else:
                said.append(f"canceled its open {what}")
        return said

    def resume_instance(self, instance_id: int) -> None:
        """Clear a fault so the instance runs again from the next minute."""
        inst = self.parts.system.get_instance(instance_id)
        if inst is None or inst.status != "running":
            raise ServiceError(f"no running instance with id {instance_id}")
        self.parts.system.set_faulted(instance_id, None)
        self.parts.cycle.forget(instance_id)
        self.publish_all()

    def halt(self) -> None:
        """Stop all trading account-wide (decisions are still computed, no order is sent)."""
        self.parts.system.set_config(HALT_KEY, "1")
        log.warning("trading halted")
        self.publish_all()

    def resume_trading(self) -> None:
        """Lift the account-wide halt."""
        self.parts.system.set_config(HALT_KEY, "0")
        log.warning("trading resumed")
        self.publish_all()

    # --- publishing --------------------------------------------------------------------

    def publish_all(self, *, fresh_cash: bool = True) -> tuple[CardSnapshot, ...]:
        """Send cards, account and market status to the publisher (``fresh_cash``: see ``account``)."""
        cards = self.cards()
        self.publisher.cards(cards)
        self.publisher.account(self.account(cards, fresh_cash=fresh_cash))
        self.publisher.market(self.market_status())
        return cards

    def republish(self) -> tuple[CardSnapshot, ...]:
        """Publish every card in full (a view that connected after the last publish has seen no
        update it can build on), with the account and market status."""
        self.publisher.resend_cards()
        return self.publish_all(fresh_cash=False)

    def wall_info(self) -> WallInfo:
        """Version, last backup, free disk, alert status and day-trade figures for the settings panel."""
        from app import __version__
        health = health_report(self.parts.paths)
        backup = health["last_backup"]
        notifier = getattr(self.parts, "notifier", None)
        return WallInfo(version=__version__, mode=self.mode,
                        last_backup=parse_utc_text(backup["time"]) if backup else None,
                        free_disk_bytes=health["free_disk_bytes"],
                        alerts=notifier.describe() if notifier is not None else "off",
                        day_trades=self.day_trading()["summary"])

    def stream_status(self) -> StreamStatus | None:
        """The feed's state for a window that connects late: the simulated feed is always live;
        the Alpaca stream runs on the UI thread and reports itself (None here)."""
        return StreamStatus("live", simulated=True) if self.parts.feed.simulated else None

    def record_stream(self, status: StreamStatus, at: datetime) -> None:
        """Write the live-bar stream's state where ``autotrader status`` reads it (``at``: wall time)."""
        state = "no stream: sim" if status.simulated else status.state
        self.parts.system.set_config(STREAM_STATE_KEY, json.dumps(
            {"state": state, "reason": status.reason, "since": utc_text(at)}))

    def clock_behind(self) -> str | None:
        """The "waiting for the clock" sentence while the engine clock is before what this data folder
        has recorded (newest bar, last cycle), else None."""
        p = self.parts
        now = p.clock.now()
        recorded = recorded_until(p.system, p.market)
        return clock_behind_message(now, recorded) if recorded is not None and now < recorded else None

    def _publish_after_write(self) -> None:
        """Publish once a change is recorded: a failure to show it must not report the change as failed."""
        try:
            self.publish_all()
        except Exception:  # noqa: BLE001 - the write is done; the next cycle publishes again
            log.exception("publishing after a change failed")

    def status(self) -> dict:
        """Everything ``autotrader status`` prints, as plain JSON-able values."""
        p = self.parts
        market = self.market_status()
        cards = self.cards()
        cash = self.broker_cash()
        return {
            "mode": self.mode,
            "market_open": market.is_open,
            "next_open": market.next_open.isoformat(),
            "next_close": market.next_close.isoformat(),
            "halted": p.cycle.halted(),
            "broker_cash": None if cash is None else str(cash.quantize(CENT)),
            "available_cash": None if cash is None else str(self._available_from(cash).quantize(CENT)),
            "broker_error": self._last_cash_error,
            "last_cycle": read_last_cycle(p.system),
            "day_trading": self.day_trading(),
            "clock_behind": self.clock_behind(),
            "stream": json.loads(p.system.get_config(STREAM_STATE_KEY) or "null"),
            "instances": [
                {"id": c.instance_id, "display_name": c.display_name, "ticker": c.ticker,
                 "algorithm": c.algorithm_type, "shares": c.shares, "trade_count": c.trade_count,
                 "price": None if c.price is None else str(c.price), "value": str(c.value.quantize(CENT)),
                 "pnl": str(c.pnl.quantize(CENT)), "pnl_pct": str(c.pnl_pct.quantize(CENT)),
                 "faulted": c.faulted_reason, "day_check": self.day_check(c.instance_id)}
                for c in cards],
            # Storage safety and observability (issue 7): backup, sizes, free disk, logs, errors today.
            **health_report(p.paths),
        }

    def start_backtest(self, ticker, algorithm_type: str, capital, params=None, sessions: int = 20,
                       on_progress=None):
        """Start replaying ``algorithm_type`` on ``ticker`` over the last ``sessions`` completed sessions
        before the engine clock's now; returns a ``BacktestHandle`` at once (the replay runs on its
        own worker thread, never this one). Bad input raises ServiceError and starts nothing.

        ``on_progress(fraction)`` is called on the worker thread. Sim mode replays the sim data
        folder on the simulated clock.
        """
        # Imported here: the backtest machinery is only needed once someone asks for one.
        from datetime import timezone

        from app.engine.backtest.replay import BacktestError, BacktestRequest
        from app.engine.backtest.jobs import BacktestJobs
        from app.engine.marketdata.calendar import CalendarRangeError

        if isinstance(sessions, bool) or not isinstance(sessions, int) or not 1 <= sessions <= 2000:
            raise ServiceError(f"the backtest period must be 1 to 2000 sessions, got {sessions!r}")
        symbol = self.validate_ticker(ticker)
        try:
            amount = Decimal(str(capital).replace(",", "").replace("$", "").strip())
        except InvalidOperation:
            raise ServiceError(f"capital {capital!r} is not an amount of dollars") from None
        if not amount.is_finite() or amount <= 0:
            raise ServiceError("capital must be more than $0")
        if amount > MAX_CAPITAL:
            raise ServiceError(f"capital must be at most {format_money(MAX_CAPITAL)}")
        amount = amount.quantize(Decimal("0.01"))
        p = self.parts
        try:
            # Checked in a worker like a card's: a constructor that hangs or exits cannot stop the kiosk.
            resolved = p.runner.check(algorithm_type, symbol, amount, dict(params or {}), p.algorithm_dirs)
        except (AlgorithmParamError, AlgorithmLoadError) as exc:
            raise ServiceError(str(exc)) from None
        now = p.clock.now()
        cal = p.calendar
        try:
            # The last session whose close has passed: today's only once it has closed.
            last = now.astimezone(timezone.utc).date()  # a session closes on its own UTC date
            if not (cal.is_session(last) and cal.session_close(last) <= now):
                last = cal.previous_session(last)
            first = last
            for _ in range(sessions - 1):
                first = cal.previous_session(first)
            request = BacktestRequest(algorithm_type, symbol, first, last, amount, resolved)
        except CalendarRangeError as exc:
            raise ServiceError(f"cannot backtest {sessions} sessions before now: {exc}") from None
        except BacktestError as exc:
            raise ServiceError(str(exc)) from None
        jobs = self._backtest_jobs
        if jobs is None:
            jobs = self._backtest_jobs = BacktestJobs(p.settings)
        handle = jobs.start_handle(request, on_progress, now=now)
        log.info("backtest %d started: %s on %s, %s to %s", handle.job_id, algorithm_type, symbol, first, last)
        return handle
