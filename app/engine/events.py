"""Immutable values the engine emits to the UI (carried by Qt signals across threads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class TradeMarker:
    """A fill shown on a card's sparkline."""

    ts: int  # epoch seconds of the fill minute
    side: str  # 'buy' | 'sell'
    shares: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class CardSnapshot:
    """Everything one card shows, computed by the engine from system.db and the latest bar."""

    instance_id: int
    display_name: str
    ticker: str
    algorithm_type: str
    algorithm_name: str
    initial_capital: Decimal
    shares: int
    trade_count: int
    price: Decimal | None  # None: waiting for data
    price_time: datetime | None
    value: Decimal
    uninvested: Decimal
    pnl: Decimal
    pnl_pct: Decimal
    last_action: str | None = None  # e.g. "BUY 12 @ 101.20 at 14:32"
    faulted_reason: str | None = None
    refused_reason: str | None = None
    sparkline: tuple[float, ...] = ()  # closes of the ticker's current/last session
    sparkline_start: int | None = None  # epoch seconds of sparkline[0]
    markers: tuple[TradeMarker, ...] = ()
    # The x axis both the line and the markers are placed on: each close's bar minute, and the
    # session's first and last minute (epoch seconds). Empty/None: one close per minute from start.
    sparkline_times: tuple[int, ...] = ()
    sparkline_span: tuple[int, int] | None = None
    day_pnl: Decimal | None = None  # change in value since the start of the sparkline's session
    label: str = ""  # the algorithm's short title for this card's parameters ("SMA 20/50")
    params_text: str = ""  # the parameters in words ("fast 20 · slow 50")

    @property
    def title(self) -> str:
        """What a person calls the card: ``NVDA · SMA 20/50``."""
        return f"{self.ticker} · {self.label or self.algorithm_name or self.algorithm_type}"

    @property
    def waiting_for_data(self) -> bool:
        """True until the first price for this ticker has arrived."""
        return self.price is None


@dataclass(frozen=True, slots=True)
class CardsUpdate:
    """What ``cards_changed`` carries: the cards whose snapshot differs from the one sent before, and
    every running card's id in the order they are shown (a card missing from it is gone)."""

    changed: tuple[CardSnapshot, ...]
    order: tuple[int, ...]

    @classmethod
    def full(cls, cards: tuple[CardSnapshot, ...] | list[CardSnapshot]) -> CardsUpdate:
        """Every card as changed (a first update, or a view connecting late)."""
        cards = tuple(cards)
        return cls(cards, tuple(card.instance_id for card in cards))

    def apply(self, shown: dict[int, CardSnapshot]) -> dict[int, CardSnapshot]:
        """The cards after this update, in order, given the cards ``shown`` before it."""
        changed = {card.instance_id: card for card in self.changed}
        return {i: changed[i] if i in changed else shown[i] for i in self.order if i in changed or i in shown}


@dataclass(frozen=True, slots=True)
class CardChart:
    """A card's price over its last few sessions with its fills, on a trading-time axis.

    ``times`` (and the markers' ``ts``) count seconds of trading time from the first session's
    open, sessions laid end to end, so nights and weekends take no room; ``sessions`` gives where
    each session starts on that axis and its New York date.
    """

    closes: tuple[float, ...]
    times: tuple[int, ...]
    span: tuple[int, int]
    markers: tuple[TradeMarker, ...]
    sessions: tuple[tuple[int, str], ...]  # (axis position of the open, "Mon 30 Nov")


@dataclass(frozen=True, slots=True)
class StoppedCard:
    """A card that no longer trades, for the history view: what it was and what it made."""

    instance_id: int
    title: str  # "NVDA · SMA 20/50"
    display_name: str  # the machine name
    initial_capital: Decimal
    created_at: datetime
    stopped_at: datetime | None
    trade_count: int
    realised_pnl: Decimal  # booked by its sells (all of its P&L when it sold everything)
    shares_kept: int  # shares it held when it stopped (left in the account, not in realised_pnl)


@dataclass(frozen=True, slots=True)
class WallInfo:
    """What the settings panel shows about the installation."""

    version: str
    mode: str
    last_backup: datetime | None  # when the newest daily copy of system.db was written
    free_disk_bytes: int | None
    alerts: str  # one line: where alerts go, or why none are sent
    day_trades: str  # the account's day-trade figures and whether the risk guard limits them


@dataclass(frozen=True, slots=True)
class MarketStatus:
    """Whether the exchange is open now, and the next transitions (aware UTC)."""

    is_open: bool
    now: datetime
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """Live bar feed state: 'idle', 'connecting', 'live', 'reconnecting', 'limited' (connected, but
    Alpaca refused some symbols) or 'failed'; ``reason``: one sentence when it is not plainly live."""

    state: str
    reason: str | None = None
    simulated: bool = False


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """Header figures: mode badge, available cash for new cards, total P&L, halt switch."""

    mode: str  # 'sim' | 'paper' | 'live'
    available_cash: Decimal | None  # None when the broker could not be reached
    total_pnl: Decimal
    halted: bool
    broker_error: str | None = None
    value: Decimal | None = None  # broker cash + the cards' positions at their last price
    day_pnl: Decimal | None = None  # Σ of the running cards' P&L since the start of their session
    stopped_pnl: Decimal = Decimal(0)  # Σ of the stopped cards' realised P&L

    @property
    def all_cards_pnl(self) -> Decimal:
        """Every card's P&L since it started: the running cards' at their last price plus the
        stopped cards' realised P&L."""
        return self.total_pnl + self.stopped_pnl


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one minute cycle did (for status, logs and benchmarks)."""

    minute: datetime
    scheduled_at: datetime
    started_at: datetime
    duration_ms: float
    instances_run: int
    orders: int
    refused: int
    faults: int


@dataclass(frozen=True, slots=True)
class Notice:
    """A message for the person at the wall: an engine error, an order refused, an instance faulted."""

    kind: str  # 'error' | 'refused' | 'fault' | 'info'
    message: str
    instance_id: int | None = None
    at: datetime | None = field(default=None)
