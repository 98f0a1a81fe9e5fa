"""Turning an instance, its transactions and the latest bars into the CardSnapshot a card shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from app.engine.portfolio.ledger import Holding
from app.engine.events import CardSnapshot, TradeMarker
from app.engine.marketdata.calendar import MarketCalendar
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


def _downsample(bars: Sequence[Bar], points: int) -> tuple[float, ...]:
    if len(bars) <= points:
        return tuple(b.close for b in bars)
    step = len(bars) / points
    return tuple(bars[int(i * step)].close for i in range(points - 1)) + (bars[-1].close,)


class SessionBars:
    """The ticker's bars of its current (or most recent) session, read once per ticker per refresh."""

    def __init__(self, market: MarketStore, calendar: MarketCalendar):
        self._market = market
        self._calendar = calendar

    def for_ticker(self, ticker: str, now: datetime) -> list[Bar]:
        """Bars of the session containing ``now`` or, when closed, of the last session with bars."""
        latest = self._market.latest_bar(ticker)
        if latest is None:
            return []
        day = self._calendar.session_of(latest.ts)
        if day is None:
            return [latest]
        start = to_epoch(self._calendar.session_open(day))
        end = min(to_epoch(self._calendar.session_close(day)), to_epoch(now)) - 1
        return self._market.bars_between(ticker, start, end)


def _session_markers(transactions: Sequence[TransactionRecord], start_ts: int) -> tuple[TradeMarker, ...]:
    # Newest first until the session start, so the cost is this session's fills, not the history.
    markers = []
    for tx in reversed(transactions):
        ts = to_epoch(parse_utc_text(tx.timestamp))
        if ts < start_ts:
            break
        markers.append(TradeMarker(ts, tx.type, tx.shares, Decimal(str(tx.price))))
    return tuple(reversed(markers))


def build_card(instance: InstanceRecord, holding: Holding, session: Sequence[Bar],
               *, algorithm_name: str, refused_reason: str | None = None) -> CardSnapshot:
    """One card's figures (Decimal money rules) plus its sparkline and trade markers.

    ``holding`` the card's fills and totals; ``session`` the ticker's bars of its latest session.
    """
    transactions = holding.transactions
    last = session[-1] if session else None
    price = Decimal(str(last.close)) if last else None
    figures = holding.figures(instance.initial_capital, price)
    start_ts = session[0].ts if session else None
    markers = _session_markers(transactions, start_ts) if start_ts is not None else ()
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
        sparkline=_downsample(session, SPARKLINE_POINTS),
        sparkline_start=start_ts,
        markers=markers,
    )


def build_cards(holdings: Mapping[int, Holding], market: MarketStore, calendar: MarketCalendar,
                now: datetime, instances: Iterable[InstanceRecord], names: dict[str, str],
                refused: dict[int, str]) -> tuple[CardSnapshot, ...]:
    """Cards for ``instances`` (``holdings`` by instance id), reading each ticker's bars once."""
    sessions: dict[str, list[Bar]] = {}
    reader = SessionBars(market, calendar)
    cards = []
    for inst in instances:
        if inst.ticker not in sessions:
            sessions[inst.ticker] = reader.for_ticker(inst.ticker, now)
        cards.append(build_card(inst, holdings[inst.id],
                                sessions[inst.ticker],
                                algorithm_name=names.get(inst.algorithm_type, inst.algorithm_type),
                                refused_reason=refused.get(inst.id)))
    return tuple(cards)
