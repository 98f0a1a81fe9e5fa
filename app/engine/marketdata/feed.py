"""Where new bars come from, behind one small interface: the simulated market or Alpaca.

The orchestrator tells the feed which symbols running cards need, asks it to make history ready
for new symbols, and polls it once a minute. The simulated feed writes bars itself; the Alpaca feed
gets live bars from the websocket stream on the UI thread and fills gaps over REST.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from app.storage.records import Bar

HISTORY_SESSIONS = 5  # enough for any shipped algorithm's warm-up (sma 50 needs 50 minutes)


class MarketFeed(Protocol):
    """A source of minute bars for the running cards' symbols."""

    simulated: bool

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """The symbols running cards trade (reference counting happens in the caller)."""

    def ensure_ready(self, symbols: Iterable[str], now: datetime) -> None:
        """Make recent history available for ``symbols`` (fetch or generate what is missing)."""

    def cannot_trade(self, symbol: str) -> str | None:
        """Why this feed will never have live bars for ``symbol`` (None: it will)."""

    def poll(self, now: datetime) -> list[tuple[str, Bar]]:
        """Bars that became available since the last poll (stored already), oldest first."""
