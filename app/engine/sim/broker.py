"""The in-process simulated broker: market orders fill at the open of the next bar in the market store.

An order decided in minute M (``now()`` floored to the minute at submission) fills completely at
the open of the first stored bar with ``ts >= M`` — the bar after the last one the algorithm could
see — moved against the trader by ``slippage_bps`` (the rule is :class:`app.engine.trading.fills.FillRule`,
which the backtest prices its fills with too). Fills happen lazily: every read first settles
the open orders whose fill bar has arrived. Books (cash, orders, positions) live in a
:class:`SimBookStore`, so a killed sim engine reconciles on restart exactly as with Alpaca.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from app.engine.brokers.protocol import (
    AccountRules,
    InsufficientFunds,
    MarketClosed,
    NotFound,
    OrderRejected,
    OrderState,
    check_order_args,
    check_symbol_format,
)
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.engine.portfolio.money import format_money
from app.engine.trading.fills import FillRule
from app.storage.market_store import MarketStore
from app.storage.records import Bar
from app.storage.sim_book_store import SimBookStore, SimOrderRow
from app.storage.timefmt import from_epoch, parse_utc_text, to_epoch
from app.engine.marketdata.minutes import floor_ts

_POLL_S = 0.05


def _state(row: SimOrderRow) -> OrderState:
    return OrderState(
        client_order_id=row.client_order_id,
        broker_order_id=row.id,
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        status=row.status,
        filled_qty=row.filled_qty,
        filled_avg_price=row.filled_avg_price,
        filled_at=None if row.filled_at is None else parse_utc_text(row.filled_at),
        reason=row.reason,
        submitted_at=from_epoch(row.submitted_ts),
    )


class SimBroker:
    """The Broker protocol against simulated books and the market store's bars (``name = 'sim'``).

    ``now`` is the engine clock's ``now``; ``slippage_bps`` moves buys up and sells down.
    One instance per thread (it uses the thread's store connections).
    """

    name = "sim"
    concurrency = 1  # its calls use this thread's SQLite connections

    def __init__(self, book: SimBookStore, market: MarketStore, calendar: MarketCalendar,
                 now: Callable[[], datetime], *, slippage_bps: float = 0.0) -> None:
        self._rule = FillRule(slippage_bps)  # ValueError for a bad slippage
        self._book = book
        self._market = market
        self._calendar = calendar
        self._now = now
        self._reserve_prices: dict[tuple[str, int], Decimal] = {}

    # -- settling --------------------------------------------------------------------------

    def fill_price(self, side: str, bar_open: float) -> Decimal:
        """The price an order of ``side`` gets at a bar opening at ``bar_open``."""
        return self._rule.price(side, bar_open)

    def _fill_bar(self, symbol: str, decision_ts: int) -> Bar | None:
        return self._market.first_bar_from(symbol, decision_ts)

    def settle(self) -> int:
        """Fill every open order whose fill bar is now in the market store; returns how many."""
        filled = 0
        for order in self._book.open_orders():
            bar = self._fill_bar(order.symbol, order.submitted_ts)
            if bar is None:
                continue
            self._book.record_fill(order.client_order_id, self.fill_price(order.side, bar.open), bar.ts)
            filled += 1
        return filled

    # -- Broker protocol -------------------------------------------------------------------

    def account_cash(self) -> Decimal:
        """The simulated account's cash after settling due fills."""
        self.settle()
        return self._book.cash()

    def account_rules(self) -> AccountRules:
        """The simulated account is a cash account: never day-trade limited."""
        return AccountRules(margin=False)

    def validate_symbol(self, symbol: str) -> str:
        """Any well-formed ticker trades in the simulator (SimMarket makes bars for every symbol)."""
        return check_symbol_format(symbol)

    def position(self, symbol: str) -> int:
        """Whole shares held in ``symbol`` after settling due fills."""
        check_symbol_format(symbol)
        self.settle()
        return self._book.position(symbol)

    def positions(self) -> dict[str, int]:
        """Every non-zero position after settling due fills."""
        self.settle()
        return self._book.positions()

    def orders_since(self, after: datetime) -> list[OrderState]:
        """Every order of the book decided at or after ``after`` (the book is local: no paging)."""
        self.settle()
        return [_state(row) for row in self._book.orders_since(floor_ts(to_epoch(after)))]

    def get_order(self, client_order_id: str) -> OrderState | None:
        """The order with this client id (after settling due fills), or None."""
        self.settle()
        row = self._book.get_order(client_order_id)
        return None if row is None else _state(row)

    def wait_for_final(self, client_order_id: str, timeout_s: float) -> OrderState:
        """Poll until the order is final or ``timeout_s`` real seconds pass (0: look once).

        Raises NotFound for an unknown client id. In the simulator a fill needs the next bar,
        which the engine itself publishes a minute later, so the engine should not wait long here.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            state = self.get_order(client_order_id)
            if state is None:
                raise NotFound(f"the simulator has no order with client id {client_order_id!r}")
            remaining = deadline - time.monotonic()
            if state.is_final or remaining <= 0:
                return state
            time.sleep(min(_POLL_S, remaining))

    def cancel(self, client_order_id: str) -> OrderState | None:
        """Cancel the order if it has not filled yet; returns its resulting state (None if unknown)."""
        self.settle()
        row = self._book.close_order(client_order_id, "canceled", "canceled on request")
        return None if row is None else _state(row)

    def submit_market_order(self, client_order_id: str, symbol: str, side: str, qty: int) -> OrderState:
        """Accept a whole-share market order that fills at the next bar's open.

        A client id already used returns that order's state and places nothing (Alpaca answers
        422 instead, and the engine then looks the order up by client id: same outcome).
        Raises OrderRejected (bad id, symbol, side or quantity; selling more than held),
        InsufficientFunds (buy costs more than the free cash at the latest price) or
        MarketClosed.
        """
        check_order_args(client_order_id, symbol, side, qty)
        existing = self._book.get_order(client_order_id)
        if existing is not None:
            self.settle()
            return _state(self._book.get_order(client_order_id) or existing)
        now = self._now()
        try:
            is_open = self._calendar.is_open(now)
        except CalendarRangeError:
            is_open = False
        if not is_open:
            raise MarketClosed(f"the market is closed at {now:%Y-%m-%d %H:%M} UTC: order not placed")
        decision_ts = floor_ts(to_epoch(now))
        self.settle()
        if side == "buy":
            self._check_funds(symbol, qty, decision_ts)
        else:
            self._check_shares(symbol, qty)
        self._book.add_order(client_order_id, symbol, side, qty, decision_ts)
        self.settle()  # the fill bar may already be stored (e.g. when replaying history)
        row = self._book.get_order(client_order_id)
        assert row is not None
        return _state(row)

    # -- checks ----------------------------------------------------------------------------

    def _latest_price(self, symbol: str, decision_ts: int) -> Decimal | None:
        bars = self._market.last_bars(symbol, 1, decision_ts)
        return Decimal(str(bars[0].close)) if bars else None

    def _check_funds(self, symbol: str, qty: int, decision_ts: int) -> None:
        price = self._latest_price(symbol, decision_ts)
        if price is None:
            raise OrderRejected(f"no price for {symbol} yet: the simulator cannot value the order")
        cost = self._rule.buy_cost(qty, price)
        # Cash promised to buys still waiting for their fill is not free.
        reserved = Decimal(0)
        for order in self._book.open_orders():
            if order.side == "buy":
                # Stored bars never change, so each open order's valuation is computed once.
                key = (order.symbol, order.submitted_ts)
                other = self._reserve_prices.get(key)
                if other is None:
                    other = self._latest_price(order.symbol, order.submitted_ts) or Decimal(0)
                    if len(self._reserve_prices) > 10_000:
                        self._reserve_prices.clear()
                    self._reserve_prices[key] = other
                reserved += self._rule.buy_cost(order.qty, other)
        free = self._book.cash() - reserved
        if cost > free:
            raise InsufficientFunds(
                f"buying {qty} {symbol} costs about {format_money(cost)} but the simulated account "
                f"has {format_money(max(free, Decimal(0)))} free")

    def _check_shares(self, symbol: str, qty: int) -> None:
        selling = sum(o.qty for o in self._book.open_orders() if o.side == "sell" and o.symbol == symbol)
        free = self._book.position(symbol) - selling
        if qty > free:
            raise OrderRejected(
                f"cannot sell {qty} {symbol}: the account holds {max(free, 0)} not already being sold "
                "(no short selling in the simulator)")
