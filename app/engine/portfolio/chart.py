"""A card's price and fills over its last few sessions, for the detail view's chart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from app.engine.events import CardChart, TradeMarker
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.storage.market_store import MarketStore
from app.storage.records import TransactionRecord
from app.storage.timefmt import parse_utc_text, to_epoch

CHART_POINTS = 480


def card_chart(market: MarketStore, calendar: MarketCalendar, ticker: str,
               transactions: Sequence[TransactionRecord], now: datetime, *, sessions: int = 5,
               points: int = CHART_POINTS) -> CardChart | None:
    """The last ``sessions`` sessions of ``ticker`` up to ``now`` with the card's fills in them, or None
    without bars. Each close and fill is placed at its trading minute, the sessions end to end."""
    latest = market.latest_bar(ticker)
    if latest is None:
        return None
    last_day = calendar.session_of(min(latest.ts, to_epoch(now)))
    if last_day is None:
        return None
    days = [last_day]
    while len(days) < sessions:
        try:
            days.insert(0, calendar.previous_session(days[0]))
        except CalendarRangeError:  # the calendar's first day: chart what there is
            break
    offsets: list[tuple[int, int, int]] = []  # (open ts, close ts, axis offset)
    closes: list[float] = []
    times: list[int] = []
    labels: list[tuple[int, str]] = []
    offset = 0
    for day in days:
        start, end = to_epoch(calendar.session_open(day)), to_epoch(calendar.session_close(day))
        bars = market.bars_between(ticker, start, min(end, to_epoch(now)) - 1)
        if not bars and day != last_day:
            continue
        offsets.append((start, end, offset))
        labels.append((offset, f"{day:%a} {day.day} {day:%b}"))
        for bar in bars:
            closes.append(bar.close)
            times.append(offset + bar.ts - start)
        offset += end - start
    if not closes:
        return None
    if len(closes) > points:
        step = len(closes) / points
        picks = [int(i * step) for i in range(points - 1)] + [len(closes) - 1]
        closes, times = [closes[i] for i in picks], [times[i] for i in picks]

    def axis(ts: int) -> int | None:
        for start, end, base in offsets:
            if start <= ts < end:
                return base + ts - start
        return None

    markers = []
    for tx in transactions:
        ts = to_epoch(parse_utc_text(tx.timestamp))
        ts -= ts % 60
        x = axis(ts)
        if x is not None:
            markers.append(TradeMarker(x, tx.type, tx.shares, Decimal(str(tx.price))))
    return CardChart(tuple(closes), tuple(times), (0, max(offset - 60, 60)), tuple(markers), tuple(labels))
