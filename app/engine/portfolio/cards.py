"""Turning an instance, its transactions and the latest bars into the CardSnapshot a card shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    if to_epoch(parse_utc_text(instance.created_at)) >= session_open_ts:
        return value_now - Decimal(str(instance.initial_capital))
    today = card_figures(0, fills_today, None)
    shares_before = shares_now - today.shares
    # With no shares at the open the opening value is its cash, whatever the price was.
    price = close_before if close_before is not None or shares_before else Decimal(1)
    opening = figures_from_position(instance.initial_capital, shares_before,
                                    invested_now - today.invested, 0, price)
    return value_now - opening.value


def build_card(instance: InstanceRecord, holding: Holding, session: Sequence[Bar],
               *, algorithm_name: str, refused_reason: str | None = None,
               span: tuple[int, int] | None = None, close_before: Decimal | None = None,
               label: str = "", params_text: str = "") -> CardSnapshot:
    """One card's figures (Decimal money rules) plus its sparkline, trade markers and day's P&L.

    ``holding`` the card's fills and totals; ``session`` the ticker's bars of its latest session;
    ``span`` that session's first and last minute (the sparkline's x axis); ``close_before`` the
    ticker's last close before the session.
    """
    transactions = holding.transactions
    last = session[-1] if session else None
    price = Decimal(str(last.close)) if last else None
    figures = holding.figures(instance.initial_capital, price)
    start_ts = span[0] if span is not None else (session[0].ts if session else None)
    fills = _session_fills(transactions, start_ts) if start_ts is not None else []
    shown = _downsample(session, SPARKLINE_POINTS)
    today = None
    if start_ts is not None and figures.has_price:
        today = day_pnl(instance, figures.value, figures.shares, figures.invested, fills, start_ts, close_before)
    return CardSnapshot(
        instance_id=instance.id,
        display_name=instance.display_name,
        ticker=instance.ticker,
        algorithm_type=instance.algorithm_type,
        algorithm_name=algorithm_name,
        initial_capital=Decimal(str(instance.initial_capital)),
        shares=figures.shares,
        trade_count=figures.trade_count,
        price=price if figures.has_price else None,
        price_time=from_epoch(last.ts + 60) if last else None,
        value=figures.value,
        uninvested=figures.uninvested,
        pnl=figures.pnl,
        pnl_pct=figures.pnl_pct,
        last_action=describe_transaction(transactions[-1]) if transactions else None,
        faulted_reason=instance.faulted_reason,
        refused_reason=refused_reason,
        sparkline=tuple(b.close for b in shown),
        sparkline_start=session[0].ts if session else None,
        markers=_markers(fills),
        sparkline_times=tuple(b.ts for b in shown),
        sparkline_span=span,
        day_pnl=today,
        label=label,
        params_text=params_text,
    )


def build_cards(holdings: Mapping[int, Holding], market: MarketStore, calendar: MarketCalendar,
                now: datetime, instances: Iterable[InstanceRecord], names: dict[str, str],
                refused: dict[int, str],
                labels: Mapping[int, tuple[str, str]] | None = None) -> tuple[CardSnapshot, ...]:
    """Cards for ``instances`` (``holdings`` by instance id), reading each ticker's bars once.

    ``labels``: instance id → (short title, parameters in words), where the algorithm file is known.
    """
    labels = labels or {}
    sessions: dict[str, tuple[list[Bar], tuple[int, int] | None, Decimal | None]] = {}
    reader = SessionBars(market, calendar)
    cards = []
    for inst in instances:
        if inst.ticker not in sessions:
            bars = reader.for_ticker(inst.ticker, now)
            span = reader.span(bars)
            sessions[inst.ticker] = (bars, span, reader.close_before(inst.ticker, span[0]) if span else None)
        bars, span, close_before = sessions[inst.ticker]
        cards.append(build_card(inst, holdings[inst.id], bars,
                                algorithm_name=names.get(inst.algorithm_type, inst.algorithm_type),
                                refused_reason=refused.get(inst.id), span=span, close_before=close_before,
                                label=labels.get(inst.id, ("", ""))[0], params_text=labels.get(inst.id, ("", ""))[1]))
    return tuple(cards)
