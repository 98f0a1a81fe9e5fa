"""In-memory AlgorithmContext and a tiny fill simulator for algorithm tests."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, Sequence

from app.engine.algorithm_api import AlgorithmBase
from app.storage.records import Bar, TransactionRecord
from app.storage.timefmt import to_epoch, utc_text

SYMBOL = "TEST"
START = datetime(2024, 6, 4, 13, 30, tzinfo=timezone.utc)  # 09:30 ET, summer


def minute(i: int, start: datetime = START) -> datetime:
    """The ``i``-th minute after ``start``."""
    return start + timedelta(minutes=i)


def make_bars(closes: Sequence[float], start: datetime = START, highs: Sequence[float] | None = None) -> list[Bar]:
    """One bar a minute from ``start``; open = low = close, high = ``highs[i]`` or close."""
    t0 = to_epoch(start)
    return [Bar(t0 + 60 * i, c, highs[i] if highs else c, c, c, 100) for i, c in enumerate(closes)]


class MemoryContext:
    """``AlgorithmContext`` over lists of bars and fills; records every ``before_ts`` asked for."""

    def __init__(self, bars: Iterable[Bar] | Mapping[str, Iterable[Bar]] = (), symbol: str = SYMBOL) -> None:
        series = bars if isinstance(bars, Mapping) else {symbol: bars}
        self.bars = {sym: sorted(items) for sym, items in series.items()}
        self._ts = {sym: [b.ts for b in items] for sym, items in self.bars.items()}
        self.fills: dict[int, list[TransactionRecord]] = {}
        self.asked_before: list[int] = []

    def last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        self.asked_before.append(before_ts)
        end = bisect_left(self._ts.get(symbol, []), before_ts)
        return self.bars.get(symbol, [])[max(0, end - n):end]

    def bars_between(self, symbol: str, start_ts: int, end_ts: int) -> list[Bar]:
        assert start_ts <= end_ts, "the API must not ask for an empty range"
        stamps = self._ts.get(symbol, [])
        return self.bars.get(symbol, [])[bisect_left(stamps, start_ts):bisect_right(stamps, end_ts)]

    def transactions(self, algo_id: int) -> list[TransactionRecord]:
        return list(self.fills.get(algo_id, []))

    def record(self, algo_id: int, side: str, shares: int, price: float, when: datetime) -> TransactionRecord:
        """Append a fill, as the engine would after the broker filled an order."""
        fills = self.fills.setdefault(algo_id, [])
        tx = TransactionRecord(len(fills) + 1, algo_id, side, shares, price, utc_text(when), None)
        fills.append(tx)
        return tx


def simulate(algo: AlgorithmBase, ctx: MemoryContext, times: Iterable[datetime],
             algo_id: int = 1) -> list[tuple[datetime, str, int]]:
    """Call ``algo`` at each time, filling every buy/sell at the last close; returns the trades."""
    algo.bind(ctx)
    trades = []
    for when in times:
        action, shares = algo.run(when, algo_id)
        if action in ("buy", "sell"):
            price = algo.last_price()
            assert price is not None, "an algorithm traded without a price"
            ctx.record(algo_id, action, shares, price, when)
            trades.append((when, action, shares))
    return trades
