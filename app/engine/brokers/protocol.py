"""What the engine needs from a brokerage, whichever one is behind it (Alpaca or the simulator)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

SYMBOL_PATTERN = re.compile(r"^[A-Z]{1,5}(\.[A-Z]{1,2})?$")
MAX_CLIENT_ORDER_ID = 128  # Alpaca's limit; the simulator keeps the same rule
FINAL_STATUSES = frozenset({"filled", "partial", "rejected", "canceled", "failed"})


class BrokerError(Exception):
    """Base of broker errors; ``str()`` is a sentence a person can read, never a secret."""


class OrderRejected(BrokerError):
    """The broker refused the order (bad symbol, not tradable, duplicate id, ...)."""


class InsufficientFunds(OrderRejected):
    """The account cannot pay for the order."""


class MarketClosed(OrderRejected):
    """The order cannot be placed now because the market is closed."""


class NotFound(BrokerError):
    """No such order or asset at the broker."""


class BrokerUnavailable(BrokerError):
    """Transient: the broker did not answer in time or answered with a server error. Safe to retry
    later *by client order id* (never blindly re-submit)."""


class InvalidSymbol(BrokerError):
    """A ticker that is malformed, unknown, inactive or not tradable."""


def check_symbol_format(symbol: str) -> str:
    """Return the symbol if it matches the strict ticker pattern, else raise InvalidSymbol.

    Done before any request: alpaca-py puts the symbol in the URL path unescaped.
    """
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        shown = symbol if isinstance(symbol, str) and len(symbol) <= 12 else "that"
        raise InvalidSymbol(
            f"{shown!r} is not a ticker: use 1-5 capital letters, optionally a class suffix like BRK.B")
    return symbol


def check_order_args(client_order_id: str, symbol: str, side: str, qty: int) -> None:
    """Raise OrderRejected unless the id, ticker, side and whole-share quantity are well formed."""
    if not isinstance(client_order_id, str) or not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID:
        raise OrderRejected(f"client order id must be 1-{MAX_CLIENT_ORDER_ID} characters of text")
    try:
        check_symbol_format(symbol)
    except InvalidSymbol as exc:
        raise OrderRejected(str(exc)) from None
    if side not in ("buy", "sell"):
        raise OrderRejected(f"order side must be 'buy' or 'sell', not {side!r}")
    if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
        raise OrderRejected(f"an order needs a whole number of shares, at least 1 (got {qty!r})")


@dataclass(frozen=True, slots=True)
class OrderState:
    """The broker's view of one order."""

    client_order_id: str
    broker_order_id: str | None
    symbol: str
    side: str  # 'buy' | 'sell'
    qty: int
    status: str  # 'pending' | 'submitted' | one of FINAL_STATUSES
    filled_qty: int = 0
    filled_avg_price: Decimal | None = None
    filled_at: datetime | None = None
    reason: str | None = None  # why rejected/canceled, when the broker says
    submitted_at: datetime | None = None  # when the broker received it, by the broker's clock

    @property
    def is_final(self) -> bool:
        """True when nothing about this order will change any more."""
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class AccountRules:
    """The account's day-trading facts, read with the account (None: the broker does not report it).

    Alpaca stopped reporting ``pattern_day_trader`` and ``daytrade_count`` on 2026-07-06, when
    FINRA retired the pattern-day-trader rule; older accounts' answers and the fake still carry them.
    """

    margin: bool  # a margin account (multiplier above 1); cash accounts are never day-trade limited
    equity: Decimal | None = None
    pattern_day_trader: bool | None = None
    daytrade_count: int | None = None  # day trades in the last five sessions


class Broker(Protocol):
    """The brokerage operations the engine uses. Implementations: AlpacaBroker, SimBroker."""

    name: str  # 'alpaca-paper' | 'alpaca-live' | 'sim'
    # How many calls may run at once from helper threads (1: only from the owning thread).
    concurrency: int

    def account_cash(self) -> Decimal:
        """Settled + unsettled cash in the account (never margin buying power)."""

    def account_rules(self) -> AccountRules:
        """Margin or cash, equity, and the day-trade figures the broker reports."""

    def validate_symbol(self, symbol: str) -> str:
        """Return the symbol if it is a real, active, tradable asset; else raise InvalidSymbol."""

    def submit_market_order(self, client_order_id: str, symbol: str, side: str, qty: int) -> OrderState:
        """Send a whole-share ``day`` market order; never sends a second order for the same id."""

    def get_order(self, client_order_id: str) -> OrderState | None:
        """Look an order up by our client id; None if the broker never saw it."""

    def wait_for_final(self, client_order_id: str, timeout_s: float) -> OrderState:
        """Poll until the order is final or ``timeout_s`` passes; returns the last state seen."""

    def cancel(self, client_order_id: str) -> OrderState | None:
        """Cancel if not final; returns the resulting state."""

    def position(self, symbol: str) -> int:
        """Whole shares the account holds in ``symbol`` (0 if none)."""

    def positions(self) -> dict[str, int]:
        """Whole shares the account holds, by symbol (symbols with none left out)."""

    def orders_since(self, after: datetime) -> list[OrderState]:
        """Every order of the account (anyone's, any status) submitted at or after ``after``, oldest first.

        Complete however many there are (paged as the broker requires). For reconciliation.
        """
