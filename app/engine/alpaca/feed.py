"""MarketFeed on Alpaca: REST history when a symbol is added, REST gap-filling when the stream lags.

Live bars normally arrive through the websocket stream (BarStream, on the UI thread), which
writes them to stocks.db itself. This feed runs on the engine thread: it backfills recent
sessions for new symbols and, when a symbol's newest stored bar falls ~3 minutes behind during a
session (stream down, reconnecting, or silently stalled), fetches the missing minutes over REST,
at most once a minute per symbol. Failures are logged and retried later, never raised into the
trading cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from typing import Callable
from zoneinfo import ZoneInfo

from app.engine.alpaca.history import AlpacaHistory, MarketDataError, default_backfill_start
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.engine.marketdata.feed import HISTORY_SESSIONS
from app.engine.system.settings import Settings
from app.storage.market_store import MarketStore
from app.storage.records import Bar
from app.storage.timefmt import to_epoch

log = logging.getLogger("autotrader.engine.alpaca_feed")

NEW_YORK = ZoneInfo("America/New_York")
STALE_AFTER_S = 180  # newest completed minute this far past the newest stored bar: a gap
RETRY_EVERY_S = 60  # REST attempts per symbol, at most one per this many seconds
_MINUTE = 60


class AlpacaFeed:
    """The MarketFeed protocol on Alpaca REST (``simulated = False``). Engine thread only."""

    simulated = False

    def __init__(self, history: AlpacaHistory, store: MarketStore, calendar: MarketCalendar, *,
                 history_sessions: int = HISTORY_SESSIONS) -> None:
        self._history = history
        self._store = store
        self._calendar = calendar
        self._history_sessions = history_sessions
        self._symbols: tuple[str, ...] = ()
        self._last_try: dict[str, int] = {}  # symbol -> epoch of the last gap fetch attempt
        self._checked: dict[str, int] = {}  # symbol -> newest minute asked for (an IEX gap is not refetched)
        self._not_ready: dict[str, int] = {}  # symbol -> epoch of the failed history attempt

    @classmethod
    def from_settings(cls, settings: Settings, store: MarketStore, calendar: MarketCalendar, *,
                      now: Callable[[], datetime] | None = None) -> AlpacaFeed:
        """A feed on the settings' keys, data URL and feed."""
        return cls(AlpacaHistory.from_settings(settings, store, calendar, now=now), store, calendar)

    @property
    def history(self) -> AlpacaHistory:
        """The REST history fetcher this feed uses."""
        return self._history

    def set_symbols(self, symbols: Iterable[str]) -> None:
        """Watch these symbols for gaps from now on."""
        self._symbols = tuple(sorted(set(symbols)))

    def _ready_one(self, symbol: str, now: datetime) -> bool:
        today = now.astimezone(NEW_YORK).date()
        try:
            start = default_backfill_start(today, self._history_sessions, self._calendar)
            summary = self._history.backfill(symbol, start, today, now=now)
        except (MarketDataError, CalendarRangeError) as exc:
            log.warning("history for %s not ready yet: %s", symbol, exc)
            self._not_ready[symbol] = to_epoch(now)
            return False
        self._not_ready.pop(symbol, None)
        if summary.sessions_fetched:
            log.info("history for %s: %d session(s) fetched, %d bars stored", symbol,
                     summary.sessions_fetched, summary.bars_stored)
        return True

    def cannot_trade(self, symbol: str) -> str | None:
        """Alpaca streams every symbol it lists (the broker has refused unknown ones already)."""
        return None

    def ensure_ready(self, symbols: Iterable[str], now: datetime) -> None:
        """Backfill the last sessions and today's bars so far; failures are retried by poll()."""
        for symbol in symbols:
            self._ready_one(symbol, now)

    def _session_window(self, now_ts: int) -> tuple[int, int] | None:
        """(open, close) of the session now in, or just ended (a gap at the close still counts)."""
        for probe in (now_ts, now_ts - STALE_AFTER_S - _MINUTE):
            try:
                session: date | None = self._calendar.session_of(probe)
            except CalendarRangeError:
                return None
            if session is not None:
                return (to_epoch(self._calendar.session_open(session)),
                        to_epoch(self._calendar.session_close(session)))
        return None

    def poll(self, now: datetime) -> list[tuple[str, Bar]]:
        """Bars fetched over REST for symbols whose stored bars lag; oldest first."""
        now_ts = to_epoch(now)
        for symbol, failed_at in list(self._not_ready.items()):
            if symbol in self._symbols and now_ts - failed_at >= RETRY_EVERY_S:
                self._ready_one(symbol, now)
        window = self._session_window(now_ts)
        if window is None:
            return []
        open_ts, close_ts = window
        end_ts = min(now_ts // _MINUTE * _MINUTE, close_ts)  # minutes before this have completed
        newest_due = end_ts - _MINUTE
        out: list[tuple[str, Bar]] = []
        for symbol in self._symbols:
            latest = self._store.latest_bar(symbol)
            latest_ts = latest.ts if latest is not None else None
            seen = max(open_ts - _MINUTE, latest_ts or 0, self._checked.get(symbol, 0))
            if newest_due - seen < STALE_AFTER_S:
                continue
            if now_ts - self._last_try.get(symbol, -RETRY_EVERY_S) < RETRY_EVERY_S:
                continue
            self._last_try[symbol] = now_ts
            try:
                bars = self._history.fill_gap(symbol, seen + _MINUTE, end_ts - 1)
            except MarketDataError as exc:
                log.warning("could not fill the %s bar gap over REST: %s", symbol, exc)
                continue
            self._checked[symbol] = newest_due
            if bars:
                log.info("filled %d missing %s bar(s) over REST", len(bars), symbol)
            out.extend((symbol, bar) for bar in bars if latest_ts is None or bar.ts > latest_ts)
        out.sort(key=lambda item: item[1].ts)
        return out
