"""Journal-first order placement and reconciliation with the broker by client order id.

Every decision is written to the ``orders`` journal *before* it is sent, and a fill is recorded
(transaction + journal update) in one SQLite transaction. After a crash, every journal row that is
not final is resolved with the broker by its client order id, so a trade is never lost and never
counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from app.engine.brokers.protocol import (Broker, BrokerError, BrokerUnavailable, NotFound, OrderRejected,
                               OrderState)
from app.engine.minute.order_ids import ClientOrderIds
from app.storage.records import OrderRecord
from app.storage.system_store import SystemStore
from app.storage.timefmt import parse_utc_text, utc_text

log = logging.getLogger("autotrader.engine.orders")

# A pending order the broker has never heard of after this long was never received.
UNKNOWN_ORDER_GRACE = timedelta(minutes=2)


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
    """Places orders journal-first and settles them; owned by the engine thread."""

    def __init__(self, store: SystemStore, broker: Broker, now: Callable[[], datetime]):
        self._store = store
        self._broker = broker
        self._now = now
        self.ids = ClientOrderIds.for_store(store)
        # Fills already final when submit answered (e.g. found by client id after a lost answer):
        # recorded by place(), reported by the next settle().
        self._placed_fills: list[Fill] = []
        # Orders the broker closed without a fill since the last drain: (instance id, sentence).
        self._closed_unfilled: list[tuple[int, str]] = []

    def client_order_id(self, instance_id: int, minute: datetime, side: str) -> str:
        """The one id of the decision (instance, minute, side): the same decision is never sent twice."""
        return self.ids.make(instance_id, minute, side)

    def place(self, instance_id: int, symbol: str, side: str, shares: int,
              minute: datetime) -> tuple[OrderRecord | None, str | None]:
        """Journal then submit one market order. Returns (journal row, problem sentence or None).

        A transient failure leaves the row open for :meth:`settle`; a rejection closes it.
        """
        coid = self.client_order_id(instance_id, minute, side)
        legacy = self.ids.legacy(instance_id, minute, side)
        if legacy is not None and self._store.get_order(legacy) is not None:
            # Sent under the earlier id scheme just before an upgrade: still the same decision.
            return self._store.get_order(legacy), "this decision was already sent"
        if not self._store.journal_order(coid, instance_id, symbol, side, shares, utc_text(self._now())):
            return self._store.get_order(coid), "this decision was already sent"
        try:
            state = self._broker.submit_market_order(coid, symbol, side, shares)
        except OrderRejected as exc:
            self._store.mark_final(coid, "rejected", str(exc))
            log.warning("order %s rejected: %s", coid, exc)
            return self._store.get_order(coid), f"broker rejected the order: {exc}"
        except BrokerUnavailable as exc:
            log.warning("order %s not confirmed (%s); will check by client id", coid, exc)
            return self._store.get_order(coid), f"broker did not confirm the order yet: {exc}"
        except BrokerError as exc:
            self._store.mark_final(coid, "failed", str(exc))
            log.error("order %s failed: %s", coid, exc)
            return self._store.get_order(coid), f"order failed: {exc}"
        self._store.mark_submitted(coid, state.broker_order_id or "")
        fill = self.apply(state)
        if fill:
            self._placed_fills.append(fill)
        return self._store.get_order(coid), None

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
                                            float(state.filled_avg_price), filled_at, status)
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

    def drain_unfilled(self) -> list[tuple[int, str]]:
        """Orders the broker closed without any fill since the last call, as (instance id, sentence)."""
        closed, self._closed_unfilled = self._closed_unfilled, []
        return closed

    def open_orders(self) -> list[OrderRecord]:
        """Journal rows not yet final."""
        return self._store.open_orders()

    def settle(self, wait_s: float = 0.0) -> list[Fill]:
        """Ask the broker about every open journal row and record what became final.

        ``wait_s`` > 0 polls each open order up to that long (live brokers fill within a second or
        two); 0 only looks. Orders the broker never received are closed as failed after a grace
        period.
        """
        fills, self._placed_fills = self._placed_fills, []
        fills.extend(self._resolve_open(wait_s, at_start=False))
        return fills

    def reconcile_at_start(self) -> list[Fill]:
        """Resolve every open journal row before the first cycle (after a crash or power cut).

        At start a pending order the broker does not know was never sent: it is failed at once.
        """
        return self._resolve_open(0.0, at_start=True)

    def _resolve_open(self, wait_s: float, *, at_start: bool) -> list[Fill]:
        fills: list[Fill] = []
        for order in self._store.open_orders():
            coid = order.client_order_id
            try:
                state = (self._broker.wait_for_final(coid, wait_s) if wait_s > 0
                         else self._broker.get_order(coid))
            except NotFound:
                state = None
            except BrokerError as exc:
                log.warning("could not check order %s yet: %s", coid, exc)
                continue
            if state is None:
                if at_start:
                    self._store.mark_final(coid, "failed", "not found at the broker after restart")
                elif self._now() - parse_utc_text(order.submitted_at) >= UNKNOWN_ORDER_GRACE:
                    self._store.mark_final(coid, "failed", "the broker never received this order")
                    log.warning("order %s unknown to the broker: marked failed", coid)
                continue
            if order.status == "pending" and state.broker_order_id:
                self._store.mark_submitted(coid, state.broker_order_id)
            fill = self.apply(state)
            if fill:
                fills.append(fill)
        return fills

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
