"""Backtests: replay an algorithm file, unchanged, over stored minute bars on a simulated clock.

The replay mirrors the live path (TradingCycle + SimBroker) minute for minute, through the same
trading core (``app.engine.trading``) and money sums (``Position``): at every session minute T the
algorithm sees bars with ``ts < T`` only (served from memory, truncated at T); a buy or sell passes
the risk guard (a card with an open order is refused, as live); the market order fills at the open
of the first bar with ``ts >= T`` at the simulated broker's fill price, and the fill becomes
visible once that bar has closed. The algorithm runs directly in the calling thread (no time budget), and an exception
stops the backtest with the algorithm's error.

``run_backtest`` is the whole job (fetch missing bars, load, replay) and may run in a worker
thread: it opens its own SQLite connections, reports progress and honours a cancel event.

Data: a symbol with real (imported or fetched) bars is replayed on those only. Missing sessions
are fetched when Alpaca keys are set; otherwise the replay runs on what exists and says which
sessions were missing (``require_complete`` refuses instead). Synthetic bars are generated only
in sim mode for a symbol without real bars, and such a result says SIMULATED.
"""

from __future__ import annotations

import gc
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterator, Mapping, MutableSequence, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import accumulate, repeat
from math import inf
from operator import add, attrgetter, mul, sub, truediv
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from app.engine.algorithm_api import AlgorithmBase, AlgorithmParamError, unwrapped_run
from app.engine.plugins.loader import AlgorithmLoadError, create_algorithm, default_dirs
from app.engine.plugins.runner import AlgorithmFault, describe_exception, validate_decision
from app.engine.brokers.protocol import InvalidSymbol, check_symbol_format
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.engine.portfolio.money import Position, to_decimal, whole_shares
from app.engine.trading.fills import FillRule, booked_price, check_slippage
from app.engine.trading.guard import OrderRequest, refusal
from app.engine.system.settings import Settings
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource, TransactionRecord
from app.storage.timefmt import epoch_text, from_epoch, to_epoch

if TYPE_CHECKING:
    from app.engine.backtest.prefetch import BarReader

__all__ = [
    "BacktestCancelled", "BacktestError", "BacktestRequest", "BacktestResult", "BacktestRunError",
    "DataProvenance", "EquityPoint", "MemoryBars", "Refusal", "Trade", "replay_bars", "run_backtest",
]

ProgressFn = Callable[[float], None]
# ts, open, close of bars, oldest first: lists, or arrays for ts and open (read by index only)
Columns = tuple[MutableSequence[int], MutableSequence[float], list[float]]

DEFAULT_CAPITAL = Decimal("10000")
DEFAULT_WARMUP_SESSIONS = 5
DEFAULT_EQUITY_POINTS = 1000
ALGO_ID = 1  # the replayed card's id, as algorithms see it in run(current_time, algo_id)
_HOLD_ANSWER = ("hold", 0)
MAX_REFUSALS_KEPT = 20
SIM_SEED = 0  # the sim engine's default seed: a sim backtest sees the bars the sim cards trade on
_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")
_ONE_MINUTE = timedelta(minutes=1)
_FETCH_SHARE = 0.3  # share of the progress bar given to fetching, when anything must be fetched
_SESSIONS_LISTED = 5  # missing sessions named in a sentence; the JSON lists them all


class BacktestError(Exception):
    """Bad input or no data: the message is one human sentence (the CLI exits with code 2)."""


class BacktestRunError(BacktestError):
    """The backtest started but could not finish: the algorithm failed, or data could not be fetched."""


class BacktestCancelled(Exception):
    """The cancel event was set; nothing was returned."""


# --- request and results ---------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestRequest:
    """What to replay: an algorithm type with parameters, one symbol, New York days ``start``..``end``
    inclusive, the card's capital and the fill slippage in basis points.

    ``warmup_sessions`` sessions before ``start`` are loaded too, so indicators are ready at the
    first minute; ``equity_points`` caps the equity curve's length (it is downsampled).
    Invalid values raise ``BacktestError``.
    """

    algorithm_type: str
    symbol: str
    start: date
    end: date
    capital: Decimal = DEFAULT_CAPITAL
    params: Mapping[str, Any] = field(default_factory=dict)
    slippage_bps: float = 0.0
    warmup_sessions: int = DEFAULT_WARMUP_SESSIONS
    equity_points: int = DEFAULT_EQUITY_POINTS
    require_complete: bool = False  # refuse when a session of the range has no complete real data
    # A card's fills before ``start``, oldest first: the replay continues that book (the evening
    # check replays a card's day from where the card stood at the open). Not trades of the result.
    prior_fills: tuple[TransactionRecord, ...] = ()

    def __post_init__(self) -> None:
        try:
            check_symbol_format(self.symbol)
        except InvalidSymbol as exc:
            raise BacktestError(str(exc)) from None
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, datetime) or not isinstance(value, date):
                raise BacktestError(f"the {name} must be a date, got {value!r}")
        if self.end < self.start:
            raise BacktestError(f"the end date {self.end} is before the start date {self.start}")
        try:
            capital = to_decimal(self.capital, "capital")
        except (TypeError, ValueError) as exc:
            raise BacktestError(str(exc)) from None
        if capital <= 0:
            raise BacktestError(f"the capital must be positive, got {self.capital}")
        object.__setattr__(self, "capital", capital)
        try:
            check_slippage(self.slippage_bps)
        except ValueError as exc:
            raise BacktestError(str(exc)) from None
        for name, low in (("warmup_sessions", 0), ("equity_points", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BacktestError(f"{name} must be a whole number >= {low}, got {value!r}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "prior_fills", tuple(self.prior_fills))


def _pickled_by_fields(cls: Any) -> Any:
    """Pickle a frozen dataclass with slots as (class, field values). Its default re-reads ``fields()``
    for every object: most of the time to send a 5-year backtest's results from its worker."""
    values = attrgetter(*cls.__slots__)

    def __reduce__(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__
    return cls


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Trade:
    """One fill: at ``timestamp`` (the fill bar's minute), ``shares`` at ``price``; ``decided_at`` is
    the decision minute. ``price`` is the recorded fill price, ``value`` = shares × price."""

    timestamp: datetime
    side: str
    shares: int
    price: Decimal
    value: Decimal
    decided_at: datetime


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The card's value at ``timestamp`` (marked at the last closed bar), and the shares it held."""

    timestamp: datetime
    value: float
    shares: int


@_pickled_by_fields
@dataclass(frozen=True, slots=True)
class Refusal:
    """A decision the risk guard refused (``app.engine.trading.guard.refusal``), and why."""

    decided_at: datetime
    side: str
    shares: int
    reason: str


def _dates_text(days: Sequence[date]) -> str:
    shown = ", ".join(d.isoformat() for d in days[:_SESSIONS_LISTED])
    return shown + (f" and {len(days) - _SESSIONS_LISTED:,} more" if len(days) > _SESSIONS_LISTED else "")


@dataclass(frozen=True)
class DataProvenance:
    """What a backtest ran on: the bars' sources in the range, and the sessions it lacked.

    ``sources`` counts the range's bars (warm-up excluded) by source label ('imported', 'Alpaca',
    'simulated', 'unknown'); ``missing_sessions`` are sessions of the range without complete data
    (``partial_sessions`` of them are held in part); ``warmup_missing`` the same for the warm-up.
    """

    sources: Mapping[str, int]
    missing_sessions: tuple[date, ...] = ()
    partial_sessions: tuple[date, ...] = ()
    warmup_missing: tuple[date, ...] = ()

    @property
    def bars(self) -> int:
        """Bars in the range."""
        return sum(self.sources.values())

    @property
    def simulated(self) -> bool:
        """True when the bars are synthetic (sim mode, a symbol without real bars)."""
        return BarSource.SIMULATED.label in self.sources

    @property
    def kind(self) -> str:
        """'SIMULATED', 'real (imported)', 'real (Alpaca + imported)', 'unknown source', ..."""
        if self.simulated:
            return "SIMULATED"
        real = [label for label, _ in sorted(self.sources.items(), key=lambda kv: -kv[1])
                if label != BarSource.UNKNOWN.label]
        unknown = BarSource.UNKNOWN.label in self.sources
        if not real:
            return "unknown source (stored before AutoTrader recorded where bars come from)" if unknown \
                else "no bars"
        return f"real ({' + '.join(real)}{' + unknown' if unknown else ''})"

    @property
    def text(self) -> str:
        """One line a person reads: ``real (imported) · 2,340 bars · 2 sessions missing``."""
        parts = [self.kind, f"{self.bars:,} bars"]
        if self.missing_sessions:
            n = len(self.missing_sessions)
            part = f"{n:,} session{'s' if n != 1 else ''} missing"
            if self.partial_sessions:
                part += f" ({len(self.partial_sessions):,} of them partial)"
            parts.append(part)
        if self.warmup_missing:
            n = len(self.warmup_missing)
            parts.append(f"{n:,} warm-up session{'s' if n != 1 else ''} missing")
        return " · ".join(parts)

    @property
    def missing_text(self) -> str:
        """The missing sessions named (the first few), or "" when none is missing."""
        return _dates_text(self.missing_sessions) if self.missing_sessions else ""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, dates as text."""
        return {"text": self.text, "kind": self.kind, "simulated": self.simulated, "bars": self.bars,
                "sources": dict(self.sources),
                "missing_sessions": [d.isoformat() for d in self.missing_sessions],
                "partial_sessions": [d.isoformat() for d in self.partial_sessions],
                "warmup_missing_sessions": [d.isoformat() for d in self.warmup_missing]}


def _num(value: Decimal) -> float:
    return float(value)


def _cents(value: Decimal) -> float:
    return float(value.quantize(_CENT))


def _z(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (as ``utc_text``, in half its time: tens of thousands per result)."""
    utc = timezone.utc
    return (moment if moment.tzinfo is utc else moment.astimezone(utc)).isoformat()[:19] + "Z"


@dataclass(frozen=True)
class BacktestResult:
    """What the algorithm would have done, with the figures a person compares before trusting it.

    Money is Decimal, derived by the live money rules (``Position``, ``card_figures``); statistics (drawdown,
    win rate, exposure) are floats in percent. ``win_rate`` is None without a completed round trip.
    """

    algorithm_type: str
    algorithm_name: str
    symbol: str
    start: date
    end: date
    params: Mapping[str, Any]
    capital: Decimal
    slippage_bps: float
    trades: tuple[Trade, ...]
    final_value: Decimal
    final_shares: int
    uninvested: Decimal
    pnl: Decimal
    pnl_pct: Decimal
    max_drawdown: float  # dollars, peak to trough of the per-minute equity
    max_drawdown_pct: float
    round_trips: int
    winning_trips: int
    win_rate: float | None
    exposure_pct: float  # share of decision minutes with shares held
    buy_and_hold_pnl: Decimal
    buy_and_hold_pnl_pct: Decimal
    equity_curve: tuple[EquityPoint, ...]
    bars: int  # bars in the range (warm-up excluded)
    minutes: int  # decision minutes replayed
    refused_orders: int
    refusals: tuple[Refusal, ...]  # the first MAX_REFUSALS_KEPT
    unfilled_order: str | None  # an order still open at the end, which had no bar to fill at
    elapsed_s: float
    # Buy-and-hold's value (timestamp, dollars) at the equity curve's instants: the same whole shares
    # as ``buy_and_hold_pnl`` bought at the range's first open, marked at the same closes.
    benchmark_curve: tuple[tuple[datetime, float], ...] = ()
    # What the bars were; None for a replay of bars handed over in memory (``replay_bars``).
    data: DataProvenance | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types: dates as text, instants as ``YYYY-MM-DDTHH:MM:SSZ``, money as numbers."""
        return {
            "algorithm_type": self.algorithm_type,
            "algorithm_name": self.algorithm_name,
            "symbol": self.symbol,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "params": dict(self.params),
            "capital": _num(self.capital),
            "slippage_bps": self.slippage_bps,
            "final_value": _cents(self.final_value),
            "final_shares": self.final_shares,
            "uninvested": _cents(self.uninvested),
            "pnl": _cents(self.pnl),
            "pnl_pct": round(float(self.pnl_pct), 4),
            "max_drawdown": round(self.max_drawdown, 2),
            "max_drawdown_pct": round(self.max_drawdown_pct, 4),
            "round_trips": self.round_trips,
            "winning_trips": self.winning_trips,
            "win_rate": None if self.win_rate is None else round(self.win_rate, 4),
            "exposure_pct": round(self.exposure_pct, 4),
            "buy_and_hold_pnl": _cents(self.buy_and_hold_pnl),
            "buy_and_hold_pnl_pct": round(float(self.buy_and_hold_pnl_pct), 4),
            "bars": self.bars,
            "minutes": self.minutes,
            "refused_orders": self.refused_orders,
            "refusals": [{"decided_at": _z(r.decided_at), "side": r.side, "shares": r.shares,
                          "reason": r.reason} for r in self.refusals],
            "unfilled_order": self.unfilled_order,
            "elapsed_s": round(self.elapsed_s, 3),
            "trades": [{"timestamp": _z(t.timestamp), "side": t.side, "shares": t.shares,
                        "price": _num(t.price), "value": _num(t.value), "decided_at": _z(t.decided_at)}
                       for t in self.trades],
            "equity_curve": [{"timestamp": _z(p.timestamp), "value": round(p.value, 2), "shares": p.shares}
                             for p in self.equity_curve],
            "benchmark_curve": [{"timestamp": _z(ts), "value": round(value, 2)} for ts, value in self.benchmark_curve],
            "data": None if self.data is None else self.data.to_json(),
        }


# --- the algorithm's data, from memory ------------------------------------------------------


_ts_of = attrgetter("ts")
_open_of = attrgetter("open")
_close_of = attrgetter("close")


class _Stamps:
    """The ``ts`` of a sorted bar sequence, read by ``bisect`` without copying it."""

    __slots__ = ("bars",)

    def __init__(self, bars: Sequence[Bar]) -> None:
        self.bars = bars

    def __len__(self) -> int:
        return len(self.bars)

    def __getitem__(self, i: int) -> int:
        return self.bars[i].ts


class MemoryBars:
    """AlgorithmContext over one symbol's bars in memory, truncated at the replay's current minute.

    ``now`` is the decision minute; ``visible`` the number of bars with ``ts < now``. Both are
    moved forward by the replay only, so whatever the algorithm asks, no bar at or after ``now``
    is ever returned.

    The replay reads the columns ``stamps``, ``opens`` and ``closes``; the whole bars (``bars``)
    are made from ``bars`` given, or loaded by ``load`` when an algorithm first asks for one
    (:meth:`of_columns`): most algorithms read closes only. Bars from ``later_from`` on may still
    be on their way (:meth:`load_through`).
    """

    __slots__ = ("symbol", "_bars", "_load", "stamps", "opens", "closes", "now", "visible", "_fills", "_unrecorded",
                 "later_from", "_later")

    def __init__(self, symbol: str, bars: Sequence[Bar]) -> None:
        self.symbol = symbol
        self._bars: list[Bar] | None = list(bars)
        self._load: Callable[[], list[Bar]] | None = None
        self.stamps: MutableSequence[int] = list(map(_ts_of, self._bars))
        self.opens: MutableSequence[float] = list(map(_open_of, self._bars))
        self.closes = list(map(_close_of, self._bars))  # served by column to closes_before
        self.now = -1
        self.visible = 0
        self._fills: list[TransactionRecord] = []
        # Fills not made into records yet: (side, shares, recorded price, fill ts). Most algorithms
        # never ask for their transactions; the book answers position() and uninvested_cash().
        self._unrecorded: list[tuple[str, int, float, int]] = []
        self.later_from: int | None = None
        self._later: Callable[[int], tuple[Columns, int | None]] | None = None

    @classmethod
    def of_columns(cls, symbol: str, stamps: MutableSequence[int], opens: MutableSequence[float], closes: list[float],
                   load: Callable[[], list[Bar]],
                   later: tuple[int, Callable[[int], tuple[Columns, int | None]]] | None = None) -> MemoryBars:
        """Bars given as columns; ``load()`` returns the same bars whole (see ``bars``).

        ``later``: (ts, more) when the columns end before ``ts``: ``more(ts)`` returns the columns
        of the next bars from ``ts`` on, and the ts before which the bars are then complete (None:
        all are). ``load()`` returns them all.
        """
        ctx = cls(symbol, ())
        ctx._bars, ctx._load = None, load
        ctx.stamps, ctx.opens, ctx.closes = stamps, opens, closes
        if later is not None:
            ctx.later_from, ctx._later = later
        return ctx

    def load_through(self, ts: int | float) -> None:
        """Append bars to the columns (in place) until every bar with ``ts`` or before is here."""
        more = self._later
        while more is not None and self.later_from is not None and self.later_from <= ts:
            (stamps, opens, closes), self.later_from = more(self.later_from)
            self.stamps.extend(stamps)
            self.opens.extend(opens)
            self.closes.extend(closes)
        if self.later_from is None:
            self._later = None

    def load_later(self) -> None:
        """Append every bar still to come."""
        self.load_through(inf)

    @property
    def bars(self) -> list[Bar]:
        """The bars whole, oldest first (loaded on first use when given as columns)."""
        if self._bars is None:
            assert self._load is not None
            self.load_later()
            bars = self._load()
            if [b.ts for b in bars] != list(self.stamps):
                raise BacktestRunError("the stored bars changed while the backtest read them; run it again")
            self._bars = bars
        return self._bars

    def last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        """The last ``n`` bars with ``ts < min(before_ts, now)``, oldest first."""
        if symbol != self.symbol or n <= 0:
            return []
        end = self.visible if before_ts >= self.now else bisect_left(self.stamps, before_ts, 0, self.visible)
        return self.bars[end - n if end > n else 0:end]

    def bars_between(self, symbol: str, start_ts: int, end_ts: int) -> list[Bar]:
        """Bars with ``start_ts <= ts <= end_ts`` and ``ts < now``, oldest first."""
        if symbol != self.symbol or end_ts < start_ts:
            return []
        hi = self.visible if end_ts >= self.now else bisect_right(self.stamps, end_ts, 0, self.visible)
        return self.bars[bisect_left(self.stamps, start_ts, 0, hi):hi]

    @property
    def fills(self) -> list[TransactionRecord]:
        """The replayed card's fills so far as records, oldest first, as the journal records them."""
        if self._unrecorded:
            fills = self._fills
            for side, shares, price, ts in self._unrecorded:
                fills.append(TransactionRecord(len(fills) + 1, ALGO_ID, side, shares, price, epoch_text(ts), None))
            self._unrecorded.clear()
        return self._fills

    def add_fill(self, side: str, shares: int, price: float, ts: int) -> None:
        """Record a fill of the replay at ``price`` (as booked) in the bar of ``ts``."""
        self._unrecorded.append((side, shares, price, ts))

    def carry_fill(self, tx: TransactionRecord) -> None:
        """Record an earlier fill of the card, before the range, under the replayed card's id."""
        fills = self.fills
        fills.append(TransactionRecord(len(fills) + 1, ALGO_ID, tx.type, tx.shares, tx.price, tx.timestamp,
                                       tx.client_order_id))

    def transactions(self, algo_id: int) -> tuple[TransactionRecord, ...]:
        """The replayed card's fills so far, oldest first."""
        return tuple(self.fills) if algo_id == ALGO_ID else ()


# --- the replay ------------------------------------------------------------------------------


class _Book:
    """The card's money during a replay: its :class:`Position` (the live money sums, fill by fill)
    and the round trips for the statistics."""

    __slots__ = ("capital", "position", "cash_f", "trades", "trip_cost", "trip_proceeds", "trips", "wins")

    def __init__(self, capital: Decimal) -> None:
        self.capital = capital
        self.position = Position()
        self.cash_f = float(capital)  # uninvested as a float, for the per-minute equity only
        self.trades: list[Trade] = []
        self.trip_cost = Decimal(0)
        self.trip_proceeds = Decimal(0)
        self.trips = 0
        self.wins = 0

    @property
    def shares(self) -> int:
        """Shares held: Σ buy − Σ sell."""
        return self.position.shares

    @property
    def uninvested(self) -> Decimal:
        """capital − invested, as ``card_figures`` derives it."""
        return self.capital - self.position.invested

    def carry(self, ctx: MemoryBars, tx: TransactionRecord) -> None:
        """An earlier fill of the card (before the range): in the book and the history, not a trade."""
        self._apply(tx.type, tx.shares, to_decimal(tx.price, "fill price"))
        ctx.carry_fill(tx)

    def fill(self, ctx: MemoryBars, side: str, shares: int, price: Decimal, fill_ts: int, decided_ts: int) -> None:
        # Booked as the journal books a fill, and summed from what is booked: every figure equals
        # the live card's.
        recorded = booked_price(price)
        exact = to_decimal(recorded, "fill price")
        amount = self._apply(side, shares, exact)
        ctx.add_fill(side, shares, recorded, fill_ts)
        self.trades.append(Trade(from_epoch(fill_ts), side, shares, exact, amount, from_epoch(decided_ts)))

    def _apply(self, side: str, shares: int, exact: Decimal) -> Decimal:
        position = self.position
        if side == "buy" and position.shares == 0:
            self.trip_cost = self.trip_proceeds = Decimal(0)
        amount = position.book(side, shares, exact)
        if side == "buy":
            self.trip_cost += amount
        else:
            self.trip_proceeds += amount
            if position.shares == 0:
                self.trips += 1
                self.wins += self.trip_proceeds > self.trip_cost
        self.cash_f = float(self.capital - position.invested)
        return amount


def _serve_figures_from(algo: AlgorithmBase, book: _Book) -> None:
    """Answer ``position()`` and ``uninvested_cash()`` from the replay's running book.

    The base class re-sums every transaction through Decimal on each call, which makes a long
    replay quadratic in its trade count. The book holds the same sums (same prices, same order,
    same Decimal rules), so the answers are identical; a subclass that overrides either method
    keeps its own.
    """
    position = book.position
    if type(algo).position is AlgorithmBase.position:
        algo.position = lambda: position.shares  # type: ignore[method-assign]
    if type(algo).uninvested_cash is AlgorithmBase.uninvested_cash:
        algo.uninvested_cash = lambda: book.uninvested  # type: ignore[method-assign]


def _serve_bars_from(algo: AlgorithmBase, ctx: MemoryBars) -> None:
    """Answer ``bars_before(n)`` and ``closes_before(n)`` at the run's own time (the usual calls)
    straight from the replay's lists.

    The base methods check ``n``, find the context and clip the time on every call; at the run's
    own time that comes to ``ctx.last_bars(symbol, n, ctx.now)``, the slices below (of the bars, or
    of their closes). Any other call (another time, an odd ``n``) goes the base way; a subclass
    that overrides a method keeps its own.
    """
    cls = type(algo)
    if cls.bars_before is AlgorithmBase.bars_before:
        base_bars = algo.bars_before

        def bars_before(n: int, current_time: datetime | None = None) -> list[Bar]:
            if current_time is None and n.__class__ is int and n > 0:
                end = ctx.visible
                return ctx.bars[end - n if end > n else 0:end]
            return base_bars(n, current_time)

        algo.bars_before = bars_before  # type: ignore[method-assign]
    if cls.closes_before is AlgorithmBase.closes_before:
        base_closes = algo.closes_before
        closes = ctx.closes

        def closes_before(n: int, current_time: datetime | None = None) -> list[float]:
            if current_time is None and n.__class__ is int and n > 0:
                end = ctx.visible
                return closes[end - n if end > n else 0:end]
            return base_closes(n, current_time)

        algo.closes_before = closes_before  # type: ignore[method-assign]


class _GcPause:
    """Whether a ``_gc_paused`` block turned the collector off (and so may freeze and collect)."""

    owned = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a backtest, back as it was afterwards.

    A replay allocates a few small objects a minute while it keeps hundreds of thousands of bars
    alive; the collector's passes over them cost about a quarter of the loop and find nothing.
    Before its loop the replay freezes what exists (``_freeze_setup``: never looked at again), so
    ``_collect_young``, called once a session, frees the cycles an algorithm made and costs only
    what is new. Inside another pause (or with the collector already off) this changes nothing.
    """
    if not gc.isenabled() or _GcPause.owned:
        yield
        return
    gc.disable()
    _GcPause.owned = True
    try:
        yield
    finally:
        _GcPause.owned = False
        gc.unfreeze()
        gc.enable()


def _freeze_setup() -> None:
    """Set what the replay holds (bars, columns, minutes) aside from ``_collect_young``'s passes."""
    if _GcPause.owned:
        gc.freeze()


def _collect_young() -> None:
    """Free the garbage cycles made since the last call: while the collector is paused they are all
    in its youngest generation."""
    if _GcPause.owned:
        gc.collect(0)


def _picks(n: int, limit: int) -> list[int] | range:
    """Indices of at most ``limit`` evenly spread points of ``n``, first and last included."""
    return range(n) if n <= limit else sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


@dataclass(frozen=True, slots=True)
class _Curve:
    points: tuple[EquityPoint, ...]
    benchmark: tuple[tuple[datetime, float], ...]
    max_drawdown: float
    max_drawdown_pct: float
    exposure_pct: float


def _visible(stamps: MutableSequence[int], minutes: range) -> Sequence[int]:
    """For each minute of a session, how many bars have ``ts`` before it (``stamps`` sorted)."""
    lo = bisect_left(stamps, minutes[0])
    hi = bisect_left(stamps, minutes[-1] + 1, lo)
    # A bar every minute (the usual session): list() makes an array's slice comparable.
    if hi - lo == len(minutes) and list(stamps[lo:hi]) == list(minutes):
        return range(lo, hi)
    return [bisect_left(stamps, minute, lo, hi) for minute in minutes]


def _equity(per_session: Sequence[range], seen_per_session: Sequence[Sequence[int]], closes: list[float],
            capital: float, changes: list[tuple[int, int, float]], end_ts: int, limit: int,
            hold: tuple[int, float, int], opening: tuple[int, float] | None = None) -> _Curve:
    """The value at every decision minute (marked at the last closed bar) and at the end.

    ``seen_per_session`` are the bars closed at each minute (``_visible``); ``changes`` are
    (minute ts from which it holds, shares, uninvested) after each fill, in order. ``hold`` is
    buy-and-hold's (shares, price paid, index of the bar it bought at): its value is capital until
    that bar has closed, then marked at the same closes as the card. Between two fills the card's
    value moves with the closes only, so each stretch is computed in C-level passes (map,
    accumulate): the same floating-point operations, in the same order, as one value per point.
    """
    firsts = [minutes[0] for minutes in per_session]
    offsets = list(accumulate(map(len, per_session), initial=0))  # index of each session's first minute
    n = offsets[-1]

    def seen(i: int) -> int:
        """The bars closed at point ``i`` (at the end: all of them)."""
        if i >= n:
            return len(closes)
        k = bisect_right(offsets, i) - 1
        return seen_per_session[k][i - offsets[k]]

    def index_of(ts: int) -> int:
        """The first point at or after ``ts`` (a decision minute, or the end)."""
        if ts >= end_ts:
            return n
        k = bisect_right(firsts, ts) - 1
        if k < 0:
            return 0
        return offsets[k] + min((ts - firsts[k] + 59) // 60, len(per_session[k]))

    def marks(a: int, b: int) -> list[float]:
        """The closes points a..b-1 are marked at (0 before any bar has closed): a slice of the
        closes for the minutes of a session with a bar every minute."""
        out: list[float] = []
        k = bisect_right(offsets, a) - 1
        while a < b:
            if a >= n:  # the end
                out.append(closes[-1] if closes else 0.0)
                break
            first, stop = offsets[k], min(b, offsets[k + 1])
            part = seen_per_session[k][a - first:stop - first]
            if isinstance(part, range) and part.start > 0:
                out += closes[part.start - 1:part.stop - 1]
            else:
                out += [closes[v - 1] if v > 0 else 0.0 for v in part]
            a, k = stop, k + 1
        return out

    start_shares, start_cash = opening or (0, capital)  # the book before the range's first fill
    starts = [0] + [index_of(ts) for ts, _, _ in changes]
    states = [(start_shares, start_cash)] + [(shares, cash) for _, shares, cash in changes]
    peak, top_fall, top_ratio, held_points = -inf, -inf, -inf, 0
    for k, (a, (held, cash)) in enumerate(zip(starts, states)):
        b = starts[k + 1] if k + 1 < len(starts) else n + 1
        if a >= b:
            continue
        if not held:  # 0 * mark + cash: one value for the whole stretch, so one point stands for all
            peak = max(peak, cash)
            fall = peak - cash
            top_fall = max(top_fall, fall)
            top_ratio = max(top_ratio, fall / peak if peak > 0 else 0.0)
            continue
        held_points += min(b, n) - min(a, n)
        stretch = marks(a, b)
        if held > 0:
            # The value grows with the mark (IEEE products and sums are monotone), so the stretch's
            # peaks, and bounds of its falls, come from its lowest and highest marks. A stretch that
            # cannot set a new worst fall is passed over: the figures stay those of every point.
            end_peak = max(peak, held * max(stretch) + cash)
            first_peak = max(peak, held * stretch[0] + cash)
            bound = end_peak - (held * min(stretch) + cash)
            if bound <= top_fall and first_peak > 0 and bound / first_peak <= top_ratio:
                peak = end_peak
                continue
        values = list(map(add, map(mul, repeat(held), stretch), repeat(cash)))
        peaks = list(accumulate(values, max, initial=peak))[1:]
        falls = list(map(sub, peaks, values))
        peak = peaks[-1]
        top_fall = max(top_fall, max(falls))
        if peaks[0] > 0:  # peaks only grow: all are positive
            top_ratio = max(top_ratio, max(map(truediv, falls, peaks)))
        else:
            top_ratio = max(top_ratio, max(fall / top if top > 0 else 0.0 for fall, top in zip(falls, peaks)))
    hold_shares, hold_price, hold_bar = hold
    points, benchmark = [], []
    for i in _picks(n + 1, limit):
        held, cash = states[bisect_right(starts, i) - 1]
        v = seen(i)
        mark = closes[v - 1] if v > 0 else 0.0
        if i < n:
            k = bisect_right(offsets, i) - 1
            ts = per_session[k][i - offsets[k]]
        else:
            ts = end_ts
        point = EquityPoint(from_epoch(ts), float(held * mark + cash), held)
        points.append(point)
        benchmark.append((point.timestamp, float(capital + hold_shares * (mark - hold_price)) if v > hold_bar
                          else float(capital)))
    return _Curve(tuple(points), tuple(benchmark), float(top_fall), float(top_ratio) * 100, held_points / n * 100)


def _replay(algo: AlgorithmBase, request: BacktestRequest, sessions: Sequence[date], ctx: MemoryBars,
            calendar: MarketCalendar, progress: ProgressFn | None, cancel: threading.Event | None,
            progress_from: float = 0.0, data: DataProvenance | None = None,
            halted: Collection[int] = ()) -> BacktestResult:
    """Replay ``sessions`` over ``ctx``'s bars, which end before the last session's close."""
    began = time.perf_counter()
    symbol = request.symbol
    per_session = [calendar.session_minute_range(day) for day in sessions]
    end_ts = to_epoch(calendar.session_close(sessions[-1]))
    stamps, opens, closes = ctx.stamps, ctx.opens, ctx.closes
    ctx.load_through(per_session[0][-1])  # the warm-up and the first session
    range_lo = bisect_left(stamps, per_session[0][0])
    if range_lo >= len(stamps) and ctx.later_from is not None:  # nothing of the range is here yet
        ctx.load_later()
        range_lo = bisect_left(stamps, per_session[0][0])
    if range_lo >= len(stamps):
        if data is not None and not data.simulated and data.missing_sessions:
            raise BacktestError(f"no {symbol} bars between {request.start} and {request.end}: "
                                f"{len(data.missing_sessions):,} sessions missing; import or fetch them "
                                "(simulated bars are never used for a symbol with real bars)")
        raise BacktestError(f"no {symbol} bars between {request.start} and {request.end}")
    algo.bind(ctx)
    book = _Book(request.capital)
    for tx in request.prior_fills:
        book.carry(ctx, tx)
    opening = (book.shares, book.cash_f)
    _serve_figures_from(algo, book)
    total = sum(map(len, per_session))
    seen_per_session: list[Sequence[int]] = []  # the bars closed at each minute, session by session
    rule = FillRule(request.slippage_bps)
    refusals: list[Refusal] = []
    refused = 0
    changes: list[tuple[int, int, float]] = []
    # The open order: (side, shares, decision minute, index of its fill bar — nbars if none yet).
    pending: tuple[str, int, int, int] | None = None

    def settle(now: int) -> None:
        nonlocal pending
        side, shares, decided, fill_i = pending  # type: ignore[misc]
        book.fill(ctx, side, shares, rule.price(side, opens[fill_i]), stamps[fill_i], decided)
        changes.append((now, book.shares, book.cash_f))
        pending = None
        algo._tx_cache = None  # the fills the algorithm may have read changed

    # The replay sets the run's time itself (below), so run is called without the live wrapper.
    run = unwrapped_run(algo)
    _serve_bars_from(algo, ctx)
    algo._algo_id = ALGO_ID
    fromts = datetime.fromtimestamp
    utc = timezone.utc
    done = 0
    _freeze_setup()
    for day_minutes in per_session:
        if cancel is not None and cancel.is_set():
            raise BacktestCancelled("backtest cancelled")
        if ctx.later_from is not None and day_minutes[-1] >= ctx.later_from:
            ctx.load_through(day_minutes[-1])  # the session's bars are on their way
        # Bars with ts < T are what the algorithm may see at decision minute T.
        seen_per_session.append(_visible(stamps, day_minutes))
        if progress is not None:
            progress(progress_from + (1.0 - progress_from) * done / total)
        _collect_young()
        when = fromts(day_minutes[0], utc) - _ONE_MINUTE
        for now, vis in zip(day_minutes, seen_per_session[-1]):
            when += _ONE_MINUTE  # session minutes are consecutive: cheaper than a datetime per ts
            ctx.now = now
            ctx.visible = vis
            if pending is not None and pending[3] < vis:  # its fill bar has closed: the fill is known
                settle(now)
            # What the wrapper's _enter_run does: ``when`` is on the minute, so floor(when) == now
            # (its cache of the card's fills is dropped by ``settle``, the only change to them).
            algo._now_ts = now
            try:
                raw = run(algo, when, ALGO_ID)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a SystemExit in a plug-in must not end the caller
                raise BacktestRunError(f"{request.algorithm_type} failed at {epoch_text(now)}: "
                                       f"{describe_exception(exc, algo)}") from None
            # Fast path for the common answer (validate_decision gives HOLD for it too).
            if raw.__class__ is tuple and raw == _HOLD_ANSWER:
                continue
            try:
                decision = validate_decision(raw)
            except AlgorithmFault as fault:
                raise BacktestRunError(
                    f"{request.algorithm_type} failed at {epoch_text(now)}: {fault.reason}") from None
            if decision.action == "hold":
                continue
            # As TradingCycle._check: the price is the last close the algorithm saw; every session
            # minute is an open market minute.
            reason = refusal(OrderRequest(
                side=decision.action, shares=decision.shares,
                price=Decimal(str(closes[vis - 1])) if vis else None,
                instance_uninvested=book.uninvested, instance_shares=book.shares,
                market_open=True, halted=now in halted, order_open=pending is not None))
            if reason is not None:
                refused += 1
                if len(refusals) < MAX_REFUSALS_KEPT:
                    refusals.append(Refusal(from_epoch(now), decision.action, decision.shares, reason))
                continue
            pending = (decision.action, decision.shares, now, vis)  # fills at the first bar ts >= now
        done += len(day_minutes)

    # After the last minute every bar of the range has closed: the last decision can fill.
    ctx.load_later()
    nbars = len(stamps)
    unfilled = None
    if pending is not None and pending[3] < nbars:
        settle(end_ts)
    if pending is not None:
        unfilled = (f"the {pending[0]} of {pending[1]} shares decided at {epoch_text(pending[2])} "
                    "had no later bar in the range to fill at")
    last_close = closes[-1]
    figures = book.position.figures(request.capital, last_close)
    bh_shares, bh_price = _buy_and_hold_shares(request.capital, opens[range_lo], rule)
    curve = _equity(per_session, seen_per_session, closes, float(request.capital), changes, end_ts,
                    request.equity_points, (bh_shares, float(bh_price), range_lo), opening)
    if progress is not None:
        progress(1.0)
    bh_pnl, bh_pct = _buy_and_hold(request.capital, opens[range_lo], last_close, rule)
    return BacktestResult(
        algorithm_type=request.algorithm_type, algorithm_name=str(type(algo).name or request.algorithm_type),
        symbol=symbol, start=request.start, end=request.end, params=MappingProxyType(dict(algo.params)),
        capital=request.capital, slippage_bps=float(request.slippage_bps), trades=tuple(book.trades),
        final_value=figures.value, final_shares=figures.shares, uninvested=figures.uninvested,
        pnl=figures.pnl, pnl_pct=figures.pnl_pct, max_drawdown=curve.max_drawdown,
        max_drawdown_pct=curve.max_drawdown_pct, round_trips=book.trips, winning_trips=book.wins,
        win_rate=(book.wins / book.trips * 100) if book.trips else None, exposure_pct=curve.exposure_pct,
        buy_and_hold_pnl=bh_pnl, buy_and_hold_pnl_pct=bh_pct, equity_curve=curve.points,
        bars=nbars - range_lo, minutes=total, refused_orders=refused, refusals=tuple(refusals),
        unfilled_order=unfilled, elapsed_s=time.perf_counter() - began, benchmark_curve=curve.benchmark,
        data=data)


def _buy_and_hold_shares(capital: Decimal, first_open: float, rule: FillRule) -> tuple[int, Decimal]:
    """Buy-and-hold's whole shares and the price paid: a buy's fill price at the range's first open."""
    price = rule.price("buy", first_open)
    return whole_shares(capital, price), price


def _buy_and_hold(capital: Decimal, first_open: float, last_close: float,
                  rule: FillRule) -> tuple[Decimal, Decimal]:
    """Whole shares bought at the range's first open (with slippage), valued at its last close."""
    shares, price = _buy_and_hold_shares(capital, first_open, rule)
    pnl = shares * (Decimal(str(last_close)) - price)
    return pnl, pnl / capital * _HUNDRED


# --- entry points ----------------------------------------------------------------------------


def _create(request: BacktestRequest, algorithm_dirs: Sequence[Path | str] | None) -> AlgorithmBase:
    try:
        return create_algorithm(request.algorithm_type, request.symbol, request.capital,
                                dict(request.params), algorithm_dirs)
    except AlgorithmParamError as exc:
        raise BacktestError(f"bad parameter for {request.algorithm_type}: {exc}") from None
    except AlgorithmLoadError as exc:
        raise BacktestError(str(exc)) from None


def _sessions(calendar: MarketCalendar, request: BacktestRequest) -> list[date]:
    try:
        return calendar.sessions_between(request.start, request.end)
    except CalendarRangeError as exc:
        raise BacktestError(str(exc)) from None


def _warmup_start(calendar: MarketCalendar, first: date, count: int) -> date:
    day = first
    for _ in range(count):
        try:
            day = calendar.previous_session(day)
        except CalendarRangeError:
            break
    return day


@_gc_paused()
def replay_bars(request: BacktestRequest, bars: Sequence[Bar], *,
                algorithm_dirs: Sequence[Path | str] | None = None, calendar: MarketCalendar | None = None,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                halted: Collection[int] = ()) -> BacktestResult:
    """Replay over ``bars`` already in memory (sorted by ts; warm-up bars before ``start`` included).

    Every session minute of ``request.start``..``request.end`` is a decision minute. No store is
    opened: this is the replay core ``run_backtest`` uses, exposed for tests and benchmarks.
    ``halted``: decision minutes (epoch seconds) at which the account's halt switch was on, as in a
    live day being replayed; their orders are refused as live.
    """
    calendar = calendar or MarketCalendar()
    algo = _create(request, algorithm_dirs)
    sessions = _sessions(calendar, request)
    if not sessions:
        raise BacktestError(f"no trading sessions between {request.start} and {request.end}")
    # Bars are sorted by ts: the range ends at the first bar of the last close or later.
    end_ts = to_epoch(calendar.session_close(sessions[-1]))
    ctx = MemoryBars(request.symbol, bars[:bisect_left(_Stamps(bars), end_ts)])
    return _replay(algo, request, sessions, ctx, calendar, progress, cancel, halted=halted)


def _ensure_bars(settings: Settings, store: MarketStore, calendar: MarketCalendar, symbol: str,
                 sessions: list[date], progress: ProgressFn | None) -> None:
    """Fetch (keys configured) or simulate (sim mode, a symbol without real bars) the sessions the
    store's coverage lacks. A real symbol's gaps stay gaps without keys."""
    missing = store.missing_sessions(symbol, sessions)
    if not missing:
        return
    if settings.mode == "sim":
        from app.engine.sim.market import SimMarket

        market = SimMarket(calendar, store, seed=SIM_SEED)
        if not market.has_real_bars(symbol):
            market.ensure_history(symbol, len(sessions), before=calendar.session_close(sessions[-1]))
        return
    from app.engine.alpaca.history import AlpacaHistory, MarketDataError, MarketDataUnavailable

    def fetched(done: int, total: int) -> None:
        if progress is not None and total:
            progress(_FETCH_SHARE * done / total)

    history = AlpacaHistory.from_settings(settings, store, calendar)
    try:
        history.backfill(symbol, sessions[0], sessions[-1], progress=fetched)
    except MarketDataUnavailable as exc:
        raise BacktestRunError(f"{exc}; try again later") from None
    except MarketDataError as exc:
        raise BacktestError(str(exc)) from None


@_gc_paused()  # from loading the bars (hundreds of thousands of new tuples) to the results
def run_backtest(request: BacktestRequest, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None, *, settings: Settings | None = None,
                 now: datetime | None = None, reader: BarReader | None = None) -> BacktestResult:
    """Fetch what is missing, load the range once and replay it; safe to call from a worker thread.

    ``settings`` (default: loaded from the environment) pick the data folder, the algorithm folders
    and the data source: Alpaca's smart fetch with keys, SimMarket in sim mode. Only sessions
    closed by ``now`` (default: the real time) are replayed. ``progress(fraction)`` is called from
    this thread, ``cancel`` is checked about once per session (raises ``BacktestCancelled``).
    Bad input raises ``BacktestError`` before any file is touched; a failing algorithm or an
    unreachable data source raise ``BacktestRunError``.

    ``reader``: the reader of the range's bars that :func:`prefetch_plan` planned
    (``prefetch.BarReader``), started by the caller, who also closes it.
    """
    from app.engine.system.data_folder import data_paths, open_market_store
    from app.engine.system.settings import SettingsError, load_settings

    if settings is None:
        try:
            settings = load_settings()
        except SettingsError as exc:
            raise BacktestError(str(exc)) from None
    calendar = MarketCalendar()
    algo = _create(request, default_dirs(settings.algorithm_dirs))
    sessions, first, wanted = _range(calendar, request, now)
    paths = data_paths(settings)
    try:
        paths.create()
    except OSError as exc:
        raise BacktestError(f"cannot create the data folder {paths.root}: {exc.strerror}") from None
    if cancel is not None and cancel.is_set():
        raise BacktestCancelled("backtest cancelled")
    symbol = request.symbol
    lo, hi = to_epoch(calendar.session_open(first)), to_epoch(calendar.session_close(sessions[-1])) - 1
    if reader is not None and (reader.symbol, reader.bounds[0], reader.bounds[-1]) != (symbol, lo, hi + 1):
        reader = None  # planned for another range: this one reads its bars alone
    with open_market_store(paths, calendar) as store:
        fetching = bool(store.missing_sessions(symbol, wanted))
        _ensure_bars(settings, store, calendar, symbol, wanted, progress)
        if cancel is not None and cancel.is_set():
            raise BacktestCancelled("backtest cancelled")
        if reader is not None:
            reader.go()  # the bars are complete: it reads the range chunk by chunk while the replay runs
        # One state of stocks.db from here to the end of the replay: the columns read now and the
        # whole bars an algorithm may ask for later are the same bars.
        with store.reading():
            data = _provenance(store, calendar, symbol, sessions, wanted[:len(wanted) - len(sessions)])
            if request.require_complete and data.missing_sessions:
                raise BacktestError(
                    f"{symbol} lacks {len(data.missing_sessions):,} session(s) of {request.start} to "
                    f"{request.end} ({data.missing_text}); import or fetch them, or run without requiring "
                    "complete data")

            def whole() -> list[Bar]:
                return store.bars_between(symbol, lo, hi)

            if reader is None:
                stamps, opens, closes = store.bar_columns(symbol, lo, hi)
                ctx = MemoryBars.of_columns(symbol, stamps, opens, closes, whole)
            else:  # the reader's columns of ts and open stay arrays: no Python number per bar
                ctx = MemoryBars.of_columns(symbol, array("q"), array("d"), [], whole, (lo, _chunks(reader, store, hi)))
            return _replay(algo, request, sessions, ctx, calendar, progress, cancel,
                           progress_from=_FETCH_SHARE if fetching and settings.mode != "sim" else 0.0, data=data)


def _range(calendar: MarketCalendar, request: BacktestRequest,
           now: datetime | None) -> tuple[list[date], date, list[date]]:
    """The sessions to replay (those closed by ``now``), the first warm-up session, and every
    session whose bars are loaded (warm-up and range)."""
    now_ts = to_epoch(now or datetime.now(timezone.utc))
    sessions = [d for d in _sessions(calendar, request) if to_epoch(calendar.session_close(d)) <= now_ts]
    if not sessions:
        raise BacktestError(f"no completed trading sessions between {request.start} and {request.end}")
    first = _warmup_start(calendar, sessions[0], request.warmup_sessions)
    return sessions, first, calendar.sessions_between(first, sessions[-1])


def prefetch_plan(request: BacktestRequest, settings: Settings,
                  now: datetime | None) -> tuple[Path, str, list[int], int] | None:
    """How a second reader (``prefetch.BarReader``) would read a long backtest's bars: (stocks.db,
    symbol, chunk bounds, session minutes in all); None for a short one or one that fails anyway."""
    from app.engine.backtest.prefetch import FIRST_SESSIONS, MIN_BARS
    from app.engine.system.data_folder import data_paths

    calendar = MarketCalendar()
    try:
        sessions, first, wanted = _range(calendar, request, now)
    except BacktestError:
        return None
    minutes = sum(map(calendar.minute_count, wanted))
    if minutes < MIN_BARS:
        return None
    # A few sessions first (the replay starts on them), then chunks twice as long as all before
    # them: the reader, three times as fast as the replay, has each ready before it is needed.
    ends, end = [], FIRST_SESSIONS
    while end < len(sessions):
        ends.append(end)
        end *= 2
    bounds = [to_epoch(calendar.session_open(first))] + [to_epoch(calendar.session_open(sessions[e])) for e in ends]
    bounds.append(to_epoch(calendar.session_close(sessions[-1])))
    return data_paths(settings).stocks_db, request.symbol, bounds, minutes


def _chunks(reader: BarReader, store: MarketStore, hi: int) -> Callable[[int], tuple[Columns, int | None]]:
    """The ``more`` of ``MemoryBars.of_columns``: the reader's next chunk when it holds as many bars
    as this snapshot does in its span; else (a failed reader, a store changed since) the rest of
    the range read here, in the snapshot."""
    bounds, symbol = reader.bounds, reader.symbol

    def more(from_ts: int) -> tuple[Columns, int | None]:
        k = bisect_left(bounds, from_ts)
        if k < len(bounds) - 1 and bounds[k] == from_ts:
            chunk = reader.next_chunk()
            if chunk is not None and \
                    len(chunk[0]) == sum(store.source_counts(symbol, from_ts, bounds[k + 1] - 1).values()):
                return chunk, (bounds[k + 1] if k + 2 < len(bounds) else None)
            reader.close()
        return store.bar_columns(symbol, from_ts, hi), None  # the rest, read here: no call follows

    return more


def _provenance(store: MarketStore, calendar: MarketCalendar, symbol: str, sessions: list[date],
                warmup: list[date]) -> DataProvenance:
    """What the store holds for the range (after fetching): sources, and the sessions lacking."""
    counts = store.source_counts(symbol, to_epoch(calendar.session_open(sessions[0])),
                                 to_epoch(calendar.session_close(sessions[-1])) - 1)
    simulated = BarSource.SIMULATED in counts
    # Synthetic sessions are generated whole; for them "missing" means nothing a person can fetch.
    missing = () if simulated else tuple(store.missing_sessions(symbol, sessions))
    return DataProvenance(
        sources={source.label: n for source, n in sorted(counts.items())},
        missing_sessions=missing,
        partial_sessions=tuple(store.partial_sessions(symbol, missing)),
        warmup_missing=() if simulated else tuple(store.missing_sessions(symbol, warmup)))
