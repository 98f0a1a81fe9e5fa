"""Bars read once per symbol per minute and shared by every card that trades the symbol.

A thousand cards on twenty tickers ask for their last bars a thousand times a minute; within one
minute the answer for a ticker is the same for all of them (bars before the cut-off do not change
while the minute's calls run), so the first card's read serves the rest. The cache lives for one
minute only: ``begin_minute`` starts a new one, and without it every call reads through.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from app.storage.records import Bar

BarReader = Callable[[str, int, int], list[Bar]]  # (symbol, n, before_ts) -> the last n bars before it


class MinuteBars:
    """``last_bars`` through a per-minute cache: one read per (symbol, cut-off), the largest ``n`` kept.

    Thread-safe (the in-process runner's worker threads share one). Each caller gets its own list,
    so an algorithm that changes the list it was given changes nobody else's bars.
    """

    def __init__(self, read: BarReader) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._minute: int | None = None
        # (symbol, before_ts) -> (n asked for, the bars read): fewer bars than asked means all there are
        self._cache: dict[tuple[str, int], tuple[int, list[Bar]]] = {}
        self._reading: dict[tuple[str, int], threading.Lock] = {}  # one read at a time per (symbol, cut-off)

    def begin_minute(self, minute_ts: int) -> None:
        """Serve the minute ``minute_ts`` (epoch s): a different minute than the last one starts afresh."""
        with self._lock:
            if minute_ts != self._minute:
                self._minute = minute_ts
                self._cache, self._reading = {}, {}

    def end_minute(self) -> None:
        """Stop caching (reads go to the store until the next ``begin_minute``)."""
        with self._lock:
            self._minute = None
            self._cache, self._reading = {}, {}

    def last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        """The last ``n`` bars strictly before ``before_ts``, oldest first, as the store returns them."""
        key = (symbol, before_ts)
        with self._lock:
            minute = self._minute
            if n <= 0 or minute is None or before_ts > minute:
                reading = None
            else:
                reading = self._reading.setdefault(key, threading.Lock())
        if reading is None:
            return self._read(symbol, n, before_ts)
        with reading:  # cards on one ticker arriving together wait for the first one's read
            with self._lock:
                cached = self._cache.get(key) if self._minute == minute else None
            if cached is not None:
                asked, bars = cached
                if asked >= n or len(bars) < asked:
                    return bars[-n:] if n < len(bars) else list(bars)
            bars = self._read(symbol, n, before_ts)
            with self._lock:
                if self._minute == minute:
                    held = self._cache.get(key)
                    if held is None or held[0] < n:
                        self._cache[key] = (n, bars)
                        bars = list(bars)  # the cached list stays the cache's own
            return bars
