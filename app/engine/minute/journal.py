"""Journal-first order placement and reconciliation with the broker by client order id.

Every decision is written to the ``orders`` journal *before* it is sent, and a fill is recorded
(transaction + journal update) in one SQLite transaction. After a crash, every journal row that is
not final is resolved with the broker by its client order id, so a trade is never lost and never
counted twice.

A minute's orders leave together (:meth:`OrderJournal.place_many`): journaled in one synced
transaction, then sent concurrently (at most ``Broker.concurrency`` requests at a time; the
journal itself stays on the engine thread, as its SQLite connection must), and all open orders are
then settled with one bounded wait. Orders of several cards for one symbol are netted into one
broker order (:mod:`app.engine.minute.netting`) whose parent row and cards' shares are journaled
together and booked together, so a crash at any point books every card exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from app.engine.brokers.protocol import (Broker, BrokerError, BrokerUnavailable, NotFound, OrderRejected,
                               OrderState)
from app.engine.minute.netting import CardOrder, NetPlan, allocate, split
from app.engine.minute.order_ids import ClientOrderIds
from app.engine.trading.fills import booked_price
from app.storage.records import NetOrderRecord, OrderRecord
from app.storage.system_store import SystemStore
from app.storage.timefmt import parse_utc_text, utc_text

log = logging.getLogger("autotrader.engine.orders")

# A pending order the broker has never heard of after this long was never received.
UNKNOWN_ORDER_GRACE = timedelta(minutes=2)
# An order still open this long after it was sent is canceled (a day market order should fill in seconds).
STALE_ORDER_AFTER = timedelta(minutes=5)
POLL_INTERVAL_S = 0.25
# Orders sent this recently are looked up with one listing when there are many; the margin covers
# the difference between the broker's clock and ours.
LIST_WINDOW = timedelta(minutes=10)
LIST_MARGIN = timedelta(minutes=2)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Fill:
    """A fill that was just recorded as a transaction."""

    instance_id: int
    client_order_id: str
    side: str
    shares: int
    price: Decimal
    transaction_id: int


class OrderJournal:
    """Places orders journal-first and settles them; owned by the engine thread.

    ``stale_after``: an order still open that long after it was sent is canceled, with a notice on
    its card (None: never).
    """

    def __init__(self, store: SystemStore, broker: Broker, now: Callable[[], datetime], *,
                 stale_after: timedelta | None = STALE_ORDER_AFTER):
        self._store = store
        self._broker = broker
        self._now = now
        self.stale_after = stale_after
        self.ids = ClientOrderIds.for_store(store)
        # A broker whose calls may overlap (HTTP) says how many; the simulator uses this thread's SQLite.
        self._concurrency = max(1, int(getattr(broker, "concurrency", 1) or 1))
        self._pool: ThreadPoolExecutor | None = None
        # Fills already final when submit answered (e.g. found by client id after a lost answer):
        # recorded by place(), reported by the next settle().
        self._placed_fills: list[Fill] = []
        # Orders the broker closed without a fill since the last drain: (instance id, sentence).
        self._closed_unfilled: list[tuple[int, str]] = []

    def close(self) -> None:
        """Stop the request threads (engine shutdown)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _map(self, fn: Callable[[Any], _T], items: Sequence[Any]) -> list[_T | BaseException]:
        """``fn`` over ``items`` with at most ``concurrency`` at a time; an exception is returned, not raised.

        Only broker calls run here: they touch no SQLite connection of this thread.
        """
        def guarded(item: Any) -> _T | BaseException:
            try:
                return fn(item)
            except Exception as exc:  # noqa: BLE001 - sorted by the caller on the engine thread
                return exc
        if self._concurrency == 1 or len(items) <= 1:
            return [guarded(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="broker")
        return list(self._pool.map(guarded, items))

    def client_order_id(self, instance_id: int, minute: datetime, side: str) -> str:
        """The one id of the decision (instance, minute, side): the same decision is never sent twice."""
        return self.ids.make(instance_id, minute, side)

    def _already_sent(self, instance_id: int, minute: datetime, side: str) -> OrderRecord | None:
        coid = self.client_order_id(instance_id, minute, side)
        legacy = self.ids.legacy(instance_id, minute, side)
        # A legacy id: sent under the earlier id scheme just before an upgrade, still the same decision.
        return self._store.get_order(coid) or (self._store.get_order(legacy) if legacy else None)

    def place(self, instance_id: int, symbol: str, side: str, shares: int,
              minute: datetime) -> tuple[OrderRecord | None, str | None]:
        """Journal then submit one market order. Returns (journal row, problem sentence or None).

        A transient failure leaves the row open for :meth:`settle`; a rejection closes it.
        """
        problems = self.place_many([CardOrder(instance_id, symbol, side, shares)], minute)
        return self._store.get_order(self.client_order_id(instance_id, minute, side)) or \
            self._already_sent(instance_id, minute, side), problems[instance_id]

    def place_many(self, orders: Iterable[CardOrder], minute: datetime,
                   prices: dict[str, Decimal | None] | None = None) -> dict[int, str | None]:
        """Journal a minute's card orders, net them per symbol, send them concurrently.

        ``prices``: the last close the decisions saw, by symbol (the price of shares that cross
        when the broker fills nothing); a symbol without one is not netted. Returns each card's
        problem sentence, or None when its order is on its way (or already booked, when it crossed).
        """
        problems: dict[int, str | None] = {}
        fresh: list[CardOrder] = []
        for order in orders:
            if self._already_sent(order.card, minute, order.side) is not None:
                problems[order.card] = "this decision was already sent"
            else:
                fresh.append(order)
                problems[order.card] = None
        plain, nets = split(fresh)
        priced: list[tuple[NetPlan, str, Decimal]] = []
        for plan in nets:
            price = (prices or {}).get(plan.symbol)
            if price is None or price <= 0:
                plain.extend(plan.orders)  # nothing to price a crossing with: sent one by one
            else:
                priced.append((plan, self.ids.make_net(minute, [(o.card, o.side, o.shares) for o in plan.orders]),
                               price))
        # Never provoke Alpaca's wash-trade refusal: no order against an opposite one still open.
        open_sides: dict[str, set[str]] = {}
        for row in self._open():
            if row.side:
                open_sides.setdefault(row.symbol, set()).add(row.side)

        def clash(symbol: str, side: str | None) -> str | None:
            if side is None or ({"buy": "sell", "sell": "buy"}[side] not in open_sides.get(symbol, ())):
                return None
            return (f"an earlier {'sell' if side == 'buy' else 'buy'} of {symbol} is still open at the broker, "
                    f"which would refuse this {side} as a potential wash trade: not sent")
        for order in list(plain):
            if (why := clash(order.symbol, order.side)) is not None:
                problems[order.card] = why
                plain.remove(order)
        for entry in list(priced):
            if (why := clash(entry[0].symbol, entry[0].side)) is not None:
                problems.update({o.card: why for o in entry[0].orders})
                priced.remove(entry)
        rows = [(self.client_order_id(o.card, minute, o.side), o.card, o.symbol, o.side, o.shares) for o in plain]
        net_rows = [(parent, plan.symbol, plan.side, plan.shares, booked_price(price),
                     tuple((self.client_order_id(o.card, minute, o.side), o.card, o.side, o.shares)
                           for o in plan.orders))
                    for plan, parent, price in priced]
        written = self._store.journal_batch(rows, net_rows, utc_text(self._now()))
        sends: list[tuple[str, str, str, int]] = []
        for coid, card, symbol, side, shares in rows:
            if coid in written:
                sends.append((coid, symbol, side, shares))
            else:
                problems[card] = "this decision was already sent"
        for plan, parent, _ in priced:
            if parent not in written:
                problems.update({o.card: "this decision was already sent" for o in plan.orders})
            elif plan.side is None:
                # Crossed whole: nothing for the broker, booked now.
                self._placed_fills.extend(self._book_net(parent, "filled", 0, None, None, announce=True))
            else:
                sends.append((parent, plan.symbol, plan.side, plan.shares))
        results = self._map(lambda s: self._broker.submit_market_order(*s), sends)
        for (coid, *_), result in zip(sends, results):
            problem = self._submitted(coid, result)
            net = self._store.get_net_order(coid)
            for child in self._store.net_shares(coid) if net is not None else [self._store.get_order(coid)]:
                if child is not None and (net is None or child.side == net.side):
                    problems[child.algorithm_id] = problem
        return problems

    def _submitted(self, coid: str, result: OrderState | BaseException) -> str | None:
        """Record what submitting ``coid`` gave; the problem sentence for its card(s), if any."""
        net = self._store.get_net_order(coid)
        what = "netted order" if net is not None else "order"
        if isinstance(result, OrderRejected):
            log.warning("%s %s rejected: %s", what, coid, result)
            self._close_unfilled(coid, "rejected", str(result))
            return f"broker rejected the {what}: {result}"
        if isinstance(result, BrokerUnavailable):
            log.warning("%s %s not confirmed (%s); will check by client id", what, coid, result)
            return f"broker did not confirm the {what} yet: {result}"
        if isinstance(result, BaseException):
            log.error("%s %s failed: %s", what, coid, result)
            self._close_unfilled(coid, "failed", str(result))
            return f"{what} failed: {result}"
        if net is not None:
            self._store.mark_net_submitted(coid, result.broker_order_id or "")
        else:
            self._store.mark_submitted(coid, result.broker_order_id or "")
        self._placed_fills.extend(self.apply_fills(result))
        return None

    def _close_unfilled(self, coid: str, status: str, error: str) -> None:
        if self._store.get_net_order(coid) is not None:
            self._placed_fills.extend(self._book_net(coid, status, 0, None, error, announce=False))
        else:
            self._store.mark_final(coid, status, error)

    def apply(self, state: OrderState, *, announce: bool = True) -> Fill | None:
        """Record a broker state in the journal; a final state with shares filled becomes a transaction.

        An order closed without a fill is reported on its card by the next cycle unless ``announce``
        is False (the caller says what happened itself, e.g. a stop that canceled it).
        """
        if not state.is_final:
            return None
        if state.filled_qty > 0 and state.filled_avg_price is not None:
            filled_at = utc_text(state.filled_at or self._now())
            order = self._store.get_order(state.client_order_id)
            already = order is not None and order.status in ("filled", "partial")
            status = "filled" if state.filled_qty >= state.qty else "partial"
            tx_id = self._store.record_fill(state.client_order_id, state.filled_qty,
                                            booked_price(state.filled_avg_price), filled_at, status)
            if tx_id is None or already or order is None:
                return None
            log.info("filled %s: %s %d %s @ %s", state.client_order_id, state.side,
                     state.filled_qty, state.symbol, state.filled_avg_price)
            return Fill(order.algorithm_id, state.client_order_id, state.side, state.filled_qty,
                        Decimal(state.filled_avg_price), tx_id)
        status = state.status if state.status in ("rejected", "canceled") else "failed"
        if self._store.mark_final(state.client_order_id, status, state.reason) and announce:
            order = self._store.get_order(state.client_order_id)
            if order is not None:
                what = {"rejected": "rejected", "canceled": "canceled"}.get(status, "did not fill")
                self._closed_unfilled.append((order.algorithm_id, (
                    f"broker {what} the {order.side} of {order.shares} {order.symbol}"
                    + (f": {state.reason}" if state.reason else ""))))
        return None

    def apply_fills(self, state: OrderState, *, announce: bool = True) -> list[Fill]:
        """:meth:`apply` for a plain or a netted order: the fills booked (a netted order books one per card)."""
        if self._store.get_net_order(state.client_order_id) is None:
            fill = self.apply(state, announce=announce)
            return [fill] if fill else []
        if not state.is_final:
            return []
        filled = state.filled_qty if state.filled_avg_price is not None else 0
        if filled:
            status = "filled" if filled >= state.qty else "partial"
        else:
            status = state.status if state.status in ("rejected", "canceled") else "failed"
        return self._book_net(state.client_order_id, status, filled, state.filled_avg_price,
                              state.reason, announce=announce, filled_at=state.filled_at)

    def _book_net(self, parent_id: str, status: str, filled: int, avg: Decimal | None, error: str | None, *,
                  announce: bool, filled_at: datetime | None = None) -> list[Fill]:
        """Book every card's share of a netted order that ended (see :mod:`app.engine.minute.netting`)."""
        net = self._store.get_net_order(parent_id)
        if net is None or net.status not in ("pending", "submitted"):
            return []
        children = self._store.net_shares(parent_id)
        plan = NetPlan(net.symbol, tuple(CardOrder(c.algorithm_id, c.symbol, c.side, c.shares) for c in children),
                       net.side, net.shares, sum(c.shares for c in children if c.side != net.side)
                       if net.side else sum(c.shares for c in children) // 2)
        filled = min(max(filled, 0), net.shares)
        if filled and avg is not None:
            price = avg
            by_card = allocate(plan, filled)
        elif net.cross_price is not None:
            price = Decimal(str(net.cross_price))
            by_card = allocate(plan, 0)
        else:  # rebuilt from the broker's records, which do not say what the cards saw: nothing to cross at
            price = Decimal(0)
            by_card = {c.algorithm_id: 0 for c in children}
            error = error or "the crossed shares were not booked: their price was lost with the journal rows"
        executed = {c.client_order_id: by_card[c.algorithm_id] for c in children}
        stamp = utc_text(filled_at or self._now())
        avg_booked = booked_price(avg) if filled and avg else None
        booked = dict(self._store.book_net_order(parent_id, status, filled, avg_booked, stamp, error, executed,
                                                 booked_price(price) if price else None))
        fills = [Fill(c.algorithm_id, c.client_order_id, c.side, executed[c.client_order_id], price,
                      booked[c.client_order_id]) for c in children if c.client_order_id in booked]
        log.info("netted %s %s: %d of %d shares filled at the broker, %d crossed, booked to %d card(s) at %s",
                 net.symbol, parent_id, filled, net.shares, plan.crossed, len(fills), price)
        if announce:
            for child in children:
                got = executed[child.client_order_id]
                if got < child.shares:
                    self._closed_unfilled.append((child.algorithm_id, (
                        f"broker {'filled' if filled else status} {filled} of the netted {net.side} of "
                        f"{net.shares} {net.symbol}: {got} of this card's {child.shares} shares booked"
                        + (f" ({error})" if error else ""))))
        return fills

    def drain_unfilled(self) -> list[tuple[int, str]]:
        """Orders the broker closed without any fill since the last call, as (instance id, sentence)."""
        closed, self._closed_unfilled = self._closed_unfilled, []
        return closed

    def open_orders(self) -> list[OrderRecord]:
        """Journal rows not yet final (a card's share of an open netted order included)."""
        return self._store.open_orders()

    def settle(self, wait_s: float = 0.0) -> list[Fill]:
        """Ask the broker about every open order and record what became final.

        One bounded wait for all of them: ``wait_s`` > 0 polls every open order (concurrently)
        until none is open or ``wait_s`` has passed; 0 only looks. Orders the broker never received
        are closed as failed after a grace period; orders open longer than ``stale_after`` are
        canceled, with a notice on their card.
        """
        fills, self._placed_fills = self._placed_fills, []
        fills.extend(self._resolve_open(wait_s, at_start=False))
        if self.stale_after is not None:
            fills.extend(self._cancel_stale())
        return fills

    def reconcile_at_start(self) -> list[Fill]:
        """Resolve every open journal row before the first cycle (after a crash or power cut).

        At start a pending order the broker does not know was never sent: it is failed at once.
        """
        return self._resolve_open(0.0, at_start=True)

    def _open(self) -> list[OrderRecord | NetOrderRecord]:
        """Orders the broker has (or may have): plain open rows and open netted orders."""
        plain: list[OrderRecord | NetOrderRecord] = [o for o in self._store.open_orders() if o.parent_id is None]
        return plain + list(self._store.open_net_orders())

    def _lookup(self, coid: str) -> OrderState | None:
        try:
            return self._broker.get_order(coid)
        except NotFound:
            return None

    def _resolve_open(self, wait_s: float, *, at_start: bool) -> list[Fill]:
        fills: list[Fill] = []
        deadline = time.monotonic() + max(0.0, wait_s)
        pending = self._open()
        while pending:
            results = self._lookup_many(pending)
            still: list[OrderRecord | NetOrderRecord] = []
            for order, result in zip(pending, results):
                if not self._resolve(order, result, at_start, fills):
                    still.append(order)
            remaining = deadline - time.monotonic()
            if not still or remaining <= 0:
                break
            time.sleep(min(POLL_INTERVAL_S, remaining))
            pending = still
        return fills

    def _lookup_many(self, pending: Sequence[OrderRecord | NetOrderRecord]) -> list[Any]:
        """The broker's state of each order (None: unknown to it; an exception: no answer).

        More recent orders than requests in flight are read with one listing of the broker's orders
        (one request instead of one each); whatever it does not show is asked for by client id.
        """
        listed: dict[str, OrderState] = {}
        now = self._now()
        recent = [o for o in pending if now - parse_utc_text(o.submitted_at) <= LIST_WINDOW]
        if len(recent) > self._concurrency:
            since = min(parse_utc_text(o.submitted_at) for o in recent) - LIST_MARGIN
            try:
                listed = {state.client_order_id: state for state in self._broker.orders_since(since)}
            except BrokerError as exc:
                log.warning("could not list the broker's orders (%s): asking one by one", exc)
        missing = [o.client_order_id for o in pending if o.client_order_id not in listed]
        asked = dict(zip(missing, self._map(self._lookup, missing)))
        return [listed[o.client_order_id] if o.client_order_id in listed else asked[o.client_order_id]
                for o in pending]

    def _resolve(self, order: OrderRecord | NetOrderRecord, result: OrderState | None | BaseException,
                 at_start: bool, fills: list[Fill]) -> bool:
        """Record one lookup; True when nothing more is to be learnt about the order now."""
        coid = order.client_order_id
        net = isinstance(order, NetOrderRecord)
        if isinstance(result, BaseException):
            log.warning("could not check order %s yet: %s", coid, result)
            return True  # the broker did not answer: the next minute asks again
        if result is None:
            if net and order.shares == 0:
                fills.extend(self._book_net(coid, "filled", 0, None, None, announce=True))  # crossed whole
            elif at_start:
                self._fail(order, "not found at the broker after restart", fills)
            elif self._now() - parse_utc_text(order.submitted_at) >= UNKNOWN_ORDER_GRACE:
                self._fail(order, "the broker never received this order", fills)
                log.warning("order %s unknown to the broker: marked failed", coid)
            else:
                return False
            return True
        if order.status == "pending" and result.broker_order_id:
            if net:
                self._store.mark_net_submitted(coid, result.broker_order_id)
            else:
                self._store.mark_submitted(coid, result.broker_order_id)
        fills.extend(self.apply_fills(result))
        return result.is_final

    def _fail(self, order: OrderRecord | NetOrderRecord, why: str, fills: list[Fill]) -> None:
        if isinstance(order, NetOrderRecord):
            fills.extend(self._book_net(order.client_order_id, "failed", 0, None, why, announce=True))
        else:
            self._store.mark_final(order.client_order_id, "failed", why)

    def _cancel_stale(self) -> list[Fill]:
        """Cancel orders open longer than ``stale_after``; their cards get a notice."""
        assert self.stale_after is not None
        now = self._now()
        stale = [o for o in self._open() if now - parse_utc_text(o.submitted_at) >= self.stale_after]
        if not stale:
            return []
        minutes = round(self.stale_after.total_seconds() / 60)
        fills: list[Fill] = []
        for order, result in zip(stale, self._map(lambda o: self._broker.cancel(o.client_order_id), stale)):
            if isinstance(result, BaseException) or result is None or not result.is_final:
                if isinstance(result, BaseException):
                    log.warning("could not cancel stale order %s: %s", order.client_order_id, result)
                continue  # asked again next minute
            booked = self.apply_fills(result, announce=False)
            fills.extend(booked)
            cards = [(o.algorithm_id, o.shares) for o in self._store.net_shares(order.client_order_id)
                     if o.side == order.side] if isinstance(order, NetOrderRecord) else \
                [(order.algorithm_id, order.shares)]
            got = f"{result.filled_qty} of {result.qty} shares filled" if result.filled_qty else "nothing filled"
            for card, _ in cards:
                self._closed_unfilled.append((card, (
                    f"canceled the {order.side} of {order.shares} {order.symbol}: still open at the broker "
                    f"after {minutes} minute{'s' if minutes != 1 else ''} ({got})")))
            log.warning("canceled stale order %s (%s)", order.client_order_id, got)
        return fills

    def cancel(self, client_order_id: str, wait_s: float) -> OrderRecord | None:
        """Cancel a card's open order and record how it ended; its journal row afterwards.

        A card's share of a netted order cancels the netted order: every card of it is booked what
        filled by then (the netting rule). An order the broker never received is closed as failed
        ("withdrawn"). None if the broker has not closed it within ``wait_s``. BrokerError if the
        broker cannot be asked.
        """
        row = self._store.get_order(client_order_id)
        if row is None or row.status not in ("pending", "submitted"):
            return row
        target = row.parent_id or client_order_id
        state = self._broker.cancel(target)
        if state is not None and not state.is_final:
            state = self._broker.wait_for_final(target, wait_s)
        if state is None:
            net = self._store.get_net_order(target)
            self._fail(net or row, "withdrawn when the card was stopped", self._placed_fills)
        elif not state.is_final:
            return None
        else:
            self._placed_fills.extend(self.apply_fills(state, announce=False))
        return self._store.get_order(client_order_id)

    def reserved(self, instance_id: int, price: Decimal | None) -> tuple[Decimal, int]:
        """Cash (buys at ``price``) and shares (sells) tied up in this instance's open orders."""
        cash = Decimal(0)
        shares = 0
        for order in self._store.open_orders():
            if order.algorithm_id != instance_id:
                continue
            if order.side == "buy":
                cash += (price or Decimal(0)) * order.shares
            else:
                shares += order.shares
        return cash, shares
