"""Reconciliation from the broker's side: fills of ours that the journal lost are booked once.

The journal-side pass (:meth:`OrderJournal.reconcile_at_start`) can only resolve rows it still has.
A power cut can take the newest commits of system.db with it — journal rows of orders the broker
then filled. This pass lists the broker's own orders since the last reconciled point, keeps those
whose client order id is this installation's (:mod:`app.engine.minute.order_ids`), journals any the
file lacks and records their fills through the journal's one fill rule, exactly once. Then it
compares the broker's positions with the cards' shares per symbol and says so when they differ; it
never "fixes" a position.

The last reconciled point (``broker_reconciled_through`` in system_config, broker time) is written
synced to disk only after booking, as the newest submission time seen (never later than now). A
power cut takes commits newest-first, so whatever the file lost was journaled after the point it
kept, and the next listing covers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from app.engine.brokers.protocol import Broker, BrokerError, OrderState
from app.engine.events import Notice
from app.engine.portfolio.money import format_money
from app.engine.minute.journal import Fill, OrderJournal
from app.storage.system_store import StoreError, SystemStore
from app.storage.timefmt import parse_utc_text, utc_text

log = logging.getLogger("autotrader.engine.reconcile")

RECONCILED_KEY = "broker_reconciled_through"
# Listings start this long before the stored point: the point has whole seconds, broker clocks and
# ours differ a little, and booking is idempotent, so re-reading a few orders costs nothing.
OVERLAP = timedelta(minutes=5)
# Without a stored point (first start of this version): this long before the newest journal row,
# or before now with an empty journal.
FIRST_LOOKBACK = timedelta(days=7)


@dataclass
class BrokerReconciliation:
    """What the broker-side pass did: fills booked, notices for the wall, counts for the log."""

    fills: list[Fill] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    listed: int = 0
    ours: int = 0
    adopted_open: int = 0
    since: datetime | None = None
    unbooked: dict[str, int] = field(default_factory=dict)  # filled shares of orders still open, by symbol
    checked: bool = False  # False when the broker could not be asked


def _point(store: SystemStore, now: datetime) -> datetime:
    text = store.get_config(RECONCILED_KEY)
    if text:
        try:
            return parse_utc_text(text) - OVERLAP
        except ValueError:
            log.warning("unreadable %s %r: listing from the first look-back", RECONCILED_KEY, text[:40])
    newest = store.newest_order_time()
    base = parse_utc_text(newest) if newest else now
    return min(base, now) - FIRST_LOOKBACK


def _price(value: Decimal | None) -> str:
    return "an unknown price" if value is None else format_money(value)


class BrokerReconciler:
    """Books the fills of this installation's orders that the broker has and the journal lacks."""

    def __init__(self, store: SystemStore, broker: Broker, journal: OrderJournal,
                 now: Callable[[], datetime]) -> None:
        self._store = store
        self._broker = broker
        self._journal = journal
        self._now = now

    def run(self, card_shares: Callable[[], Mapping[int, int]]) -> BrokerReconciliation:
        """List, book, advance the point, then compare positions.

        ``card_shares()`` gives every card's shares (running and stopped) after booking. A broker
        that cannot be asked leaves the point where it was and says so in a notice.
        """
        now = self._now()
        since = _point(self._store, now)
        result = BrokerReconciliation(since=since)
        try:
            orders = self._broker.orders_since(since)
        except BrokerError as exc:
            result.notices.append(Notice(
                "error", f"could not list the broker's orders ({exc}): no card trades until they have "
                         "been compared with the journal (tried again every minute)", at=now))
            return result
        result.checked = True
        result.listed = len(orders)
        newest: datetime | None = None
        for state in orders:
            if state.submitted_at is not None and (newest is None or state.submitted_at > newest):
                newest = state.submitted_at
            self._book(state, result, now)
        if newest is not None:
            # Only now that every listed fill is booked; synced, so the bookings before it are too.
            self._store.set_configs({RECONCILED_KEY: utc_text(min(newest, now))}, durable=True)
        self._compare_positions(card_shares(), result, now)
        log.info("broker reconciliation from %s: %d order(s) listed, %d ours, %d fill(s) booked, "
                 "%d open order(s) journaled", utc_text(since), result.listed, result.ours,
                 len(result.fills), result.adopted_open)
        return result

    def _book(self, state: OrderState, result: BrokerReconciliation, now: datetime) -> None:
        if self._journal.ids.is_net(state.client_order_id):
            self._book_net(state, result, now)
            return
        ident = self._journal.ids.parse(state.client_order_id)
        if ident is None:
            return  # placed by hand or by another installation: never adopted
        result.ours += 1
        if not state.is_final and state.filled_qty > 0:
            # Shares an open order of ours already moved: in the broker's position, on no card yet.
            sign = 1 if state.side == "buy" else -1
            result.unbooked[state.symbol] = result.unbooked.get(state.symbol, 0) + sign * state.filled_qty
        order = self._store.get_order(state.client_order_id)
        filled = state.is_final and state.filled_qty > 0
        if order is not None:
            if order.status in ("filled", "partial") or not filled:
                return  # booked already, or still open: the journal follows it
            # Open: it filled since the journal's own pass looked. Closed without a fill: the
            # journal's outcome was wrong (e.g. failed as unknown while the broker had it).
            lost = None if order.status in ("pending", "submitted") else f"the journal had it as {order.status}"
        else:
            if state.is_final and not filled:
                return  # closed without a fill: nothing to book
            problem = self._cannot_adopt(state, ident.card, ident.side)
            if problem:
                result.notices.append(Notice("error", problem + ": not booked", ident.card, now))
                log.error("%s (%s)", problem, state.client_order_id)
                return
            submitted = state.submitted_at or ident.minute
            try:
                self._store.adopt_order(state.client_order_id, ident.card, state.symbol, state.side,
                                        state.qty, utc_text(submitted), state.broker_order_id or "")
            except StoreError as exc:
                result.notices.append(Notice("error", f"an order of card #{ident.card} found at the broker "
                                                      f"could not be journaled: {exc}", ident.card, now))
                return
            if not filled:
                result.adopted_open += 1
                log.warning("journaled open order %s found at the broker", state.client_order_id)
                return
            lost = "its journal row was lost"
        fill = self._journal.apply(state, announce=False)
        if fill is None:
            return
        result.fills.append(fill)
        if lost is None:
            return
        message = (f"booked a {fill.side} of {fill.shares} {state.symbol} at {_price(fill.price)} from the "
                   f"broker's records ({lost}, e.g. in a power cut)")
        result.notices.append(Notice("info", message, fill.instance_id, now))
        log.warning("card %d: %s [%s]", fill.instance_id, message, state.client_order_id)

    def _book_net(self, state: OrderState, result: BrokerReconciliation, now: datetime) -> None:
        """A netted order of several cards: booked from its journal rows, or from its id when they were lost."""
        result.ours += 1
        coid = state.client_order_id
        if not state.is_final and state.filled_qty > 0:
            sign = 1 if state.side == "buy" else -1
            result.unbooked[state.symbol] = result.unbooked.get(state.symbol, 0) + sign * state.filled_qty
        net = self._store.get_net_order(coid)
        if net is None:
            filled = state.filled_qty > 0 and state.filled_avg_price is not None
            if state.is_final and not filled:
                return  # closed without a fill: nothing reached the account (an uncrossed loss, stated below)
            problem = self._adopt_net(state, now)
            if problem:
                result.notices.append(Notice("error", problem + ": not booked", at=now))
                log.error("%s (%s)", problem, coid)
                return
            if not filled:
                result.adopted_open += len(self._store.net_shares(coid))
                log.warning("journaled open netted order %s found at the broker", coid)
                return
            lost = True
        elif net.status not in ("pending", "submitted") or not state.is_final:
            return
        else:
            lost = False
        fills = self._journal.apply_fills(state, announce=False)
        result.fills.extend(fills)
        for fill in fills if lost else ():
            message = (f"booked a {fill.side} of {fill.shares} {state.symbol} at {_price(fill.price)}, its share "
                       "of a netted order, from the broker's records (its journal rows were lost, e.g. in a "
                       "power cut)")
            result.notices.append(Notice("info", message, fill.instance_id, now))
            log.warning("card %d: %s [%s]", fill.instance_id, message, coid)

    def _adopt_net(self, state: OrderState, now: datetime) -> str | None:
        """Journal a netted order the journal lost, from the cards' shares its id carries; a problem or None."""
        ident = self._journal.ids.parse_net(state.client_order_id)
        what = f"the broker has a netted {state.side} of {state.filled_qty} {state.symbol} of this installation"
        if ident is None or ident.shares is None:
            return f"{what} whose journal rows were lost and whose id does not list its cards"
        buys = sum(q for _, side, q in ident.shares if side == "buy")
        sells = sum(q for _, side, q in ident.shares if side == "sell")
        if (("buy" if buys > sells else "sell"), abs(buys - sells)) != (state.side, state.qty):
            return f"{what} whose id does not match the order"
        for card, _side, _qty in ident.shares:
            inst = self._store.get_instance(card)
            if inst is None or inst.ticker != state.symbol:
                return f"{what} for card #{card}, which this system.db does not have trading {state.symbol}"
        children = tuple((self._journal.ids.make(card, ident.minute, side), card, side, qty)
                         for card, side, qty in ident.shares)
        try:
            self._store.journal_batch([], [(state.client_order_id, state.symbol, state.side, state.qty,
                                            None, children)],
                                      utc_text(state.submitted_at or ident.minute))
        except StoreError as exc:
            return f"{what} that could not be journaled ({exc})"
        if self._store.get_net_order(state.client_order_id) is None:
            return f"{what} whose cards' orders are journaled apart"
        self._store.mark_net_submitted(state.client_order_id, state.broker_order_id or "")
        return None

    def _cannot_adopt(self, state: OrderState, card: int, side: str) -> str | None:
        inst = self._store.get_instance(card)
        what = f"the broker has a {state.side} of {state.filled_qty or state.qty} {state.symbol} for card #{card}"
        if inst is None:
            return f"{what}, which this system.db does not have"
        if inst.ticker != state.symbol or side != state.side or state.qty < 1:
            return f"{what} whose order does not match its id (card trades {inst.ticker})"
        return None

    def _compare_positions(self, shares_by_card: Mapping[int, int], result: BrokerReconciliation,
                           now: datetime) -> None:
        try:
            held = self._broker.positions()
        except BrokerError as exc:
            result.notices.append(Notice("error", f"could not compare positions with the broker: {exc}", at=now))
            return
        cards: dict[str, dict[int, int]] = {}
        for inst in self._store.all_instances():
            count = shares_by_card.get(inst.id, 0)
            if count:
                cards.setdefault(inst.ticker, {})[inst.id] = count
        for symbol in sorted(set(held) | set(cards)):
            broker_qty = held.get(symbol, 0)
            per_card = cards.get(symbol, {})
            pending = result.unbooked.get(symbol, 0)
            total = sum(per_card.values())
            if broker_qty == total + pending:
                continue
            which = ", ".join(f"#{card} {n}" for card, n in sorted(per_card.items())) or "none"
            if pending:
                which += f"; {pending:+d} filled of orders still open"
            message = (f"{symbol}: the broker holds {broker_qty} shares but the cards account for {total} "
                       f"({which}); orders placed by hand or by another installation also show here. "
                       "Nothing was changed")
            result.notices.append(Notice("error", message, at=now))
            log.warning("position mismatch: %s", message)
