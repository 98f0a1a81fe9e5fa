"""The simulated market as a feed: synthetic bars on the simulated clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timezone

from app.engine.marketdata.feed import HISTORY_SESSIONS
from app.engine.sim.market import SimMarket
from app.storage.records import Bar


class SimFeed:
    """Synthetic bars on the simulated clock, written into the sim data folder's stocks.db."""

    simulated = True

    def __init__(self, market: SimMarket, history_sessions: int = HISTORY_SESSIONS):
        self._market = market
        self._symbols: tuple[str, ...] = ()
        self._history_sessions = history_sessions
        self._last_poll: datetime | None = None

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Publish bars for these symbols from now on."""
        self._symbols = tuple(sorted(set(symbols)))

    def ensure_ready(self, symbols: Iterable[str], now: datetime) -> None:
        """Generate the previous sessions and today's bars so far."""
        symbols = tuple(symbols)
        for symbol in symbols:
            self._market.ensure_history(symbol, self._history_sessions, before=now)
        self._market.publish_until(symbols, now)

    def cannot_trade(self, symbol: str) -> str | None:
        """A symbol with real (imported or fetched) bars here gets no simulated ones: a card would wait for ever."""
        if not self._market.has_real_bars(symbol):
            return None
        return (f"{symbol} has real bars in the simulator's data folder (imported or fetched), and the "
                "simulator never makes up prices for a symbol with real ones: backtest it instead, "
                "or trade it with Alpaca keys")

    def poll(self, now: datetime) -> list[tuple[str, Bar]]:
        """Bars completed by ``now`` for the current symbols."""
        if not self._symbols:
            return []
        bars: list[tuple[str, Bar]] = []
        last = self._last_poll
        self._last_poll = now
        if last is not None and last.astimezone(timezone.utc).date() != now.astimezone(timezone.utc).date():
            # The last cycle of a session polls before its final bar completes and nothing polls
            # after the close: publish that bar now, so the order decided in the session's last
            # minute fills at its open, not at the next session's.
            day_end = datetime.combine(last.astimezone(timezone.utc).date(), time(23, 59), tzinfo=timezone.utc)
            bars.extend(self._market.publish_until(self._symbols, day_end))
        bars.extend(self._market.publish_until(self._symbols, now))
        return bars
