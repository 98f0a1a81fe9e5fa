"""Immutable records the stores return. Safe to pass between threads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple


class Bar(NamedTuple):
    """One minute bar. ``ts`` is the bar's opening minute in UTC epoch seconds.

    A NamedTuple rather than a dataclass: reading 200 of them must stay well under 150 µs.
    """

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: int


class BarSource(IntEnum):
    """Where a stored bar came from: its provenance, stored with it in stocks.db.

    ``UNKNOWN`` marks bars stored before AutoTrader recorded provenance (schema 1); they are
    protected like real bars (never overwritten by synthetic ones) but never called real.
    """

    UNKNOWN = 0
    ALPACA = 1
    IMPORTED = 2
    SIMULATED = 3

    @property
    def label(self) -> str:
        """The word a person reads: 'unknown', 'Alpaca', 'imported' or 'simulated'."""
        return _SOURCE_LABELS[self]

    @property
    def real(self) -> bool:
        """True for bars known to be market data (fetched or imported)."""
        return self in (BarSource.ALPACA, BarSource.IMPORTED)


_SOURCE_LABELS = {BarSource.UNKNOWN: "unknown", BarSource.ALPACA: "Alpaca",
                  BarSource.IMPORTED: "imported", BarSource.SIMULATED: "simulated"}


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A row of ``algorithm_instances``: one card."""

    id: int
    display_name: str
    algorithm_type: str
    ticker: str
    initial_capital: float
    status: str  # 'running' | 'stopped'
    created_at: str  # UTC text
    stopped_at: str | None
    params_json: str  # algorithm parameters as JSON object text
    faulted_reason: str | None  # set when the engine stopped calling this algorithm


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A row of ``transactions``: one recorded fill."""

    id: int
    algorithm_id: int
    type: str  # 'buy' | 'sell'
    shares: int
    price: float
    timestamp: str  # UTC text
    client_order_id: str | None


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A row of the ``orders`` journal: one decision sent (or about to be sent) to the broker."""

    client_order_id: str
    algorithm_id: int
    symbol: str
    side: str  # 'buy' | 'sell'
    shares: int
    status: str  # see SystemStore.ORDER_STATUSES
    submitted_at: str
    broker_order_id: str | None
    filled_qty: int
    filled_avg_price: float | None
    filled_at: str | None
    error: str | None
    parent_id: str | None = None  # the netted broker order this card's share belongs to (NetOrderRecord)


@dataclass(frozen=True, slots=True)
class NetOrderRecord:
    """A row of ``net_orders``: the one broker order of a minute's netted orders of one symbol.

    ``side`` is None and ``shares`` 0 when the cards' orders cancelled out (nothing was sent).
    ``cross_price`` is the last close the decisions saw: the price of the crossed shares when the
    broker order filled nothing.
    """

    client_order_id: str
    symbol: str
    side: str | None
    shares: int
    status: str
    submitted_at: str
    cross_price: float | None  # None: unknown (rows rebuilt from the broker): crossed shares then not booked
    broker_order_id: str | None
    filled_qty: int
    filled_avg_price: float | None
    filled_at: str | None
    error: str | None
