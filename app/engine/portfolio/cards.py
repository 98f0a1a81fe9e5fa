"""Turning an instance, its transactions and the latest bars into the CardSnapshot a card shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from datetime import datetime
from decimal import Decimal

from app.engine.portfolio.ledger import Holding
from app.engine.events import CardSnapshot, TradeMarker
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.portfolio.money import card_figures, figures_from_position
from app.storage.market_store import MarketStore
from app.storage.records import Bar, InstanceRecord, TransactionRecord
from app.storage.timefmt import from_epoch, parse_utc_text, to_epoch

SPARKLINE_POINTS = 195  # every other minute of a full session: plenty for a card's width


def _local_hhmm(moment: datetime) -> str:
    # The wall shows the machine's local time; storage stays UTC.
    return moment.astimezone().strftime("%H:%M")


def describe_transaction(tx: TransactionRecord) -> str:
    """``BUY 12 @ 101.20 at 14:32`` in local time."""
    when = _local_hhmm(parse_utc_text(tx.timestamp))
    return f"{tx.type.upper()} {tx.shares} @ {Decimal(str(tx.price)):.2f} at {when}"


def _downsample(bars: Sequence[Bar], points: int) -> Sequence[Bar]:
    """At most ``points`` bars, evenly picked, always keeping the first and the last."""
    if len(bars) <= points:
        return bars
    step = len(bars) / points
    return [bars[int(i * step)] for i in range(points - 1)] + [bars[-1]]


class SessionBars:
    """The ticker's bars of its current (or most recent) session, read once per ticker per refresh."""

    def __init__(self, market: MarketStore, calendar: MarketCalendar):
        self._market = market
        self._calendar = calendar

    def for_ticker(self, ticker: str, now: datetime) -> list[Bar]:
        """Bars of the session containing ``now`` or, when closed, of the last session with bars."""
        # The latest bar before ``now``, not the latest stored: a simulation's clock can be behind
        # bars it already wrote (the CLI runs on the wall clock, a fast sim ran ahead of it).
        before = self._market.last_bars(ticker, 1, to_epoch(now) + 1)
        if not before:
            return []
        latest = before[0]
        day = self._calendar.session_of(latest.ts)
        if day is None:
            return [latest]
        start = to_epoch(self._calendar.session_open(day))
        close = to_epoch(self._calendar.session_close(day))
        end = min(close, to_epoch(now)) - 1
        if end < start:
            # The clock reads a time before the stored session (a clock set back, a restore, an admin
            # command beside an accelerated sim): show what is stored rather than refuse to show cards.
            end = close - 1
        return self._market.bars_between(ticker, start, end)

    def span(self, bars: Sequence[Bar]) -> tuple[int, int] | None:
        """The first and last minute (epoch s) of the session ``bars`` belong to: the sparkline's x axis."""
        day = self._calendar.session_of(bars[0].ts) if bars else None
        if day is None:
            return None
        return to_epoch(self._calendar.session_open(day)), to_epoch(self._calendar.session_close(day)) - 60

    def close_before(self, ticker: str, ts: int) -> Decimal | None:
        """The last close before ``ts`` (the previous session's close, for the day's P&L)."""
        bars = self._market.last_bars(ticker, 1, ts)
        return Decimal(str(bars[0].close)) if bars else None


def _session_fills(transactions: Sequence[TransactionRecord], start_ts: int) -> list[TransactionRecord]:
    # Newest first until the session start, so the cost is this session's fills, not the history.
    fills = []
    for tx in reversed(transactions):
        if to_epoch(parse_utc_text(tx.timestamp)) < start_ts:
            break
        fills.append(tx)
    return fills[::-1]


def _markers(fills: Sequence[TransactionRecord]) -> tuple[TradeMarker, ...]:
    return tuple(TradeMarker(to_epoch(parse_utc_text(tx.timestamp)), tx.type, tx.shares, Decimal(str(tx.price)))
                 for tx in fills)


def day_pnl(instance: InstanceRecord, value_now: Decimal, shares_now: int, invested_now: Decimal,
            fills_today: Sequence[TransactionRecord], session_open_ts: int,
            close_before: Decimal | None) -> Decimal:
    """The card's value now minus its value when the session opened.

    The opening value is the position before today's fills at the previous close plus the cash it
    had; a card created during the session started at its capital. Unknown previous close (a ticker
    with no earlier bar): the card's whole P&L is today's.
    """
    today = card_figures(0, fills_today, None)
    return _day_pnl(instance, value_now, shares_now, invested_now, today.shares, today.invested, session_open_ts,
                    close_before)


@lru_cache(maxsize=4096)
def _epoch_of(text: str) -> int:
    # A card's creation time, asked for at every publish: parsed once.
    return to_epoch(parse_utc_text(text))


@lru_cache(maxsize=4096)
def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def _day_pnl(instance: InstanceRecord, value_now: Decimal, shares_now: int, invested_now: Decimal,
             shares_today: int, invested_today: Decimal, session_open_ts: int, close_before: Decimal | None) -> Decimal:
    if _epoch_of(instance.created_at) >= session_open_ts:
        return value_now - _money(instance.initial_capital)
    shares_before = shares_now - shares_today
    # With no shares at the open the opening value is its cash, whatever the price was.
    price = close_before if close_before is not None or shares_before else Decimal(1)
    opening = figures_from_position(_money(instance.initial_capital), shares_before, invested_now - invested_today, 0,
                                    price)
    return value_now - opening.value


@dataclass(frozen=True)
class TickerSession:
    """One ticker's part of every card on it: its session's bars, the sparkline drawn from them, the
    last price and the previous close. Built once per ticker per publish and shared by its cards."""

    bars: Sequence[Bar]
    span: tuple[int, int] | None  # the session's first and last minute (the sparkline's x axis)
    close_before: Decimal | None  # the last close before the session (the day's P&L)
    price: Decimal | None = None
    price_time: datetime | None = None
    sparkline: tuple[float, ...] = ()
    sparkline_times: tuple[int, ...] = ()

    @classmethod
    def of(cls, bars: Sequence[Bar], span: tuple[int, int] | None, close_before: Decimal | None) -> TickerSession:
        """The shared figures of a ticker with ``bars`` in its latest session."""
        last = bars[-1] if bars else None
        shown = _downsample(bars, SPARKLINE_POINTS)
        return cls(bars, span, close_before, Decimal(str(last.close)) if last else None,
                   from_epoch(last.ts + 60) if last else None,
                   tuple(b.close for b in shown), tuple(b.ts for b in shown))

    @property
    def start_ts(self) -> int | None:
        """Where the session's fills start (its open; the first bar when the session is unknown)."""
        return self.span[0] if self.span is not None else (self.bars[0].ts if self.bars else None)

    @classmethod
    def read(cls, reader: SessionBars, ticker: str, now: datetime) -> TickerSession:
        """Read ``ticker``'s session through ``reader``."""
        bars = reader.for_ticker(ticker, now)
        span = reader.span(bars)
        return cls.of(bars, span, reader.close_before(ticker, span[0]) if span else None)


@dataclass(frozen=True)
class _Fills:
    """What a card's fills add to its card for one session: unchanged until the card's next fill."""

    markers: tuple[TradeMarker, ...]
    last_action: str | None
    shares_today: int
    invested_today: Decimal


def _fills_part(holding: Holding, start_ts: int | None) -> _Fills:
    transactions = holding.transactions
    fills = _session_fills(transactions, start_ts) if start_ts is not None else []
    today = card_figures(0, fills, None)
    return _Fills(_markers(fills), describe_transaction(transactions[-1]) if transactions else None,
                  today.shares, today.invested)


class CardParts:
    """What building cards may reuse from one publish to the next (one per publisher, engine thread).

    A card's fill-derived parts (markers, last action, the day's shares and cost) change only with a
    new fill, i.e. a new ``Holding`` from the ledger, or a new session; its price part is per ticker.
    """

    def __init__(self) -> None:
        self._fills: dict[int, tuple[Holding, int | None, _Fills]] = {}

    def fills(self, instance_id: int, holding: Holding, start_ts: int | None) -> _Fills:
        """The card's fill-derived parts, rebuilt only when its holding or session changed."""
        kept = self._fills.get(instance_id)
        if kept is not None and kept[0] is holding and kept[1] == start_ts:
            return kept[2]
        part = _fills_part(holding, start_ts)
        self._fills[instance_id] = (holding, start_ts, part)
        return part

    def keep_only(self, instance_ids: Iterable[int]) -> None:
        """Forget cards no longer shown."""
        keep = set(instance_ids)
        for gone in [i for i in self._fills if i not in keep]:
            del self._fills[gone]


def build_card(instance: InstanceRecord, holding: Holding, session: Sequence[Bar] | TickerSession,
               *, algorithm_name: str, refused_reason: str | None = None,
               span: tuple[int, int] | None = None, close_before: Decimal | None = None,
               label: str = "", params_text: str = "", fills: _Fills | None = None) -> CardSnapshot:
    """One card's figures (Decimal money rules) plus its sparkline, trade markers and day's P&L.

    ``holding`` the card's fills and totals; ``session`` the ticker's bars of its latest session (or
    its ``TickerSession``); ``span`` that session's first and last minute (the sparkline's x axis);
    ``close_before`` the ticker's last close before the session. ``fills`` its fill-derived parts
    when already known (``CardParts``).
    """
    ticker = session if isinstance(session, TickerSession) else TickerSession.of(session, span, close_before)
    start_ts = ticker.start_ts
    capital = _money(instance.initial_capital)
    figures = holding.figures(capital, ticker.price)
    part = fills if fills is not None else _fills_part(holding, start_ts)
    today = None
    if start_ts is not None and figures.has_price:
        today = _day_pnl(instance, figures.value, figures.shares, figures.invested, part.shares_today,
                         part.invested_today, start_ts, ticker.close_before)
    return CardSnapshot(
        instance_id=instance.id,
        display_name=instance.display_name,
        ticker=instance.ticker,
        algorithm_type=instance.algorithm_type,
        algorithm_name=algorithm_name,
        initial_capital=capital,
        shares=figures.shares,
        trade_count=figures.trade_count,
        price=ticker.price if figures.has_price else None,
        price_time=ticker.price_time,
        value=figures.value,
        uninvested=figures.uninvested,
        pnl=figures.pnl,
        pnl_pct=figures.pnl_pct,
        last_action=part.last_action,
        faulted_reason=instance.faulted_reason,
        refused_reason=refused_reason,
        sparkline=ticker.sparkline,
        sparkline_start=ticker.bars[0].ts if ticker.bars else None,
        markers=part.markers,
        sparkline_times=ticker.sparkline_times,
        sparkline_span=ticker.span,
        day_pnl=today,
        label=label,
        params_text=params_text,
    )


def build_cards(holdings: Mapping[int, Holding], market: MarketStore, calendar: MarketCalendar,
                now: datetime, instances: Iterable[InstanceRecord], names: dict[str, str],
                refused: dict[int, str],
                labels: Mapping[int, tuple[str, str]] | None = None,
                parts: CardParts | None = None) -> tuple[CardSnapshot, ...]:
    """Cards for ``instances`` (``holdings`` by instance id), reading each ticker's bars once.

    ``labels``: instance id → (short title, parameters in words), where the algorithm file is known.
    ``parts``: what the last build can lend this one (cards whose fills did not change).
    """
    labels = labels or {}
    sessions: dict[str, TickerSession] = {}
    reader = SessionBars(market, calendar)
    cards = []
    for inst in instances:
        ticker = sessions.get(inst.ticker)
        if ticker is None:
            ticker = sessions[inst.ticker] = TickerSession.read(reader, inst.ticker, now)
        holding = holdings[inst.id]
        fills = parts.fills(inst.id, holding, ticker.start_ts) if parts is not None else None
        label, params_text = labels.get(inst.id, ("", ""))
        cards.append(build_card(inst, holding, ticker,
                                algorithm_name=names.get(inst.algorithm_type, inst.algorithm_type),
                                refused_reason=refused.get(inst.id), label=label, params_text=params_text,
                                fills=fills))
    if parts is not None:
        parts.keep_only(card.instance_id for card in cards)
    return tuple(cards)
