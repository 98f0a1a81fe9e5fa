"""Historical minute bars from Alpaca into stocks.db, fetching only what coverage says is missing.

A session is recorded as covered once it has been fetched after it ended, whether or not every
minute had a bar (IEX minutes without trades are normal), so it is never fetched again. The
session still in progress is never covered: only its minutes after what this process already
fetched are asked for.

The data client is built with ``raw_data=True``: building alpaca-py's pydantic Bar models costs
more than the HTTP round trip, so pages are parsed here from plain dicts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from app.engine.alpaca.clients import (
    DEFAULT_RETRIES,
    DEFAULT_RETRY_WAIT_S,
    DEFAULT_TIMEOUT_S,
    classify_error,
    client_secrets,
    make_data_client,
)
from app.engine.brokers.protocol import check_symbol_format
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.system.settings import Settings
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource
from app.storage.timefmt import parse_utc_text, to_epoch

log = logging.getLogger("autotrader.engine.alpaca_history")

NEW_YORK = ZoneInfo("America/New_York")
BATCH_SESSIONS = 25  # 25 full sessions = 9,750 bars: one 10,000-bar page per request
FULL_SESSION_BARS = 390
# A session counts as fetched only this long after its close: the last minutes' bars can land late.
COVERAGE_SETTLE_S = 15 * 60
LOOKBACK_EXTRA_SESSIONS = 20  # last_n_bars walks back at most ceil(n/390) + this many sessions
_MINUTE = 60

ProgressFn = Callable[[int, int], None]


class MarketDataError(Exception):
    """Alpaca market data could not be fetched; ``str()`` is a readable sentence without secrets."""


class MarketDataUnavailable(MarketDataError):
    """Transient: timeout, connection failure, rate limit or server error. Try again later."""


@dataclass(frozen=True, slots=True)
class BackfillSummary:
    """What one backfill did."""

    sessions_fetched: int  # sessions requested from Alpaca
    bars_stored: int  # bars written (new or refreshed)
    sessions_present: int  # sessions skipped because coverage says they were fetched before


def _instant(value: Any, what: str) -> datetime:
    """An aware datetime from a datetime or UTC text (``YYYY-MM-DDTHH:MM:SSZ``)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{what} must be timezone-aware (UTC), got {value.isoformat()}")
        return value.astimezone(timezone.utc)
    if isinstance(value, str):
        try:
            return parse_utc_text(value)
        except ValueError:
            raise ValueError(f"{what} {value!r} is not a UTC time like 2024-01-02T15:30:00Z") from None
    raise ValueError(f"{what} must be a datetime or UTC text, not {type(value).__name__}")


def _epoch_of(value: datetime | int, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a datetime or epoch seconds")
    if isinstance(value, int):
        return value
    return to_epoch(_instant(value, what))


class _BarParser:
    """Alpaca bar dicts -> Bar tuples, keeping regular-session minutes only.

    Hot loop of a backfill: ``datetime.fromisoformat`` plus a calendar call per bar would cost
    more than the HTTP transfer, so Alpaca's ``YYYY-MM-DDTHH:MM:SSZ`` is sliced, and the day part
    (-> midnight and that day's session bounds; an NYSE session lies inside one UTC day) and the
    time part (-> seconds) are looked up in small caches.
    """

    def __init__(self, calendar: MarketCalendar) -> None:
        self._calendar = calendar
        self._days: dict[str, tuple[int, int, int]] = {}  # 'YYYY-MM-DD' -> (midnight, open, close)
        self._clock: dict[str, int] = {}  # 'HH:MM:SS' -> seconds after midnight

    def _day(self, text: str) -> tuple[int, int, int]:
        day = date.fromisoformat(text)
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
        bounds = (0, 0)  # not a session: nothing is inside
        if self._calendar.first_day <= day <= self._calendar.last_day and self._calendar.is_session(day):
            bounds = (to_epoch(self._calendar.session_open(day)), to_epoch(self._calendar.session_close(day)))
        info = (midnight, *bounds)
        self._days[text] = info
        return info

    def _seconds(self, text: str) -> int:
        value = int(text[0:2]) * 3600 + int(text[3:5]) * 60 + int(text[6:8])
        self._clock[text] = value
        return value

    def _slow(self, row: Any) -> int:
        if isinstance(row, dict):
            return int(datetime.fromisoformat(str(row["t"]).replace("Z", "+00:00")).timestamp())
        return int(row.timestamp.timestamp())  # a pydantic Bar from a client without raw_data

    def parse(self, rows: Iterable[Any], start_ts: int, end_ts: int) -> list[Bar]:
        """Bars with ``start_ts <= ts <= end_ts`` that are regular-session minutes, in given order."""
        out: list[Bar] = []
        append = out.append
        days, clock = self._days, self._clock
        is_minute = self._calendar.is_session_minute
        new = tuple.__new__
        for row in rows:
            t = row["t"] if isinstance(row, dict) else None
            if type(t) is str and len(t) == 20 and t[19] == "Z" and t[10] == "T":
                info = days.get(t[:10]) or self._day(t[:10])
                ts = info[0] + (clock.get(t[11:19]) or self._seconds(t[11:19]))
                ok = info[1] <= ts < info[2] and ts % 60 == 0
            else:
                ts = self._slow(row)
                try:
                    ok = is_minute(ts)
                except ValueError:  # outside the calendar's years
                    ok = False
            if ok and start_ts <= ts <= end_ts:
                if t is not None:
                    append(new(Bar, (ts, row["o"], row["h"], row["l"], row["c"], int(row["v"]))))
                else:
                    append(Bar(ts, row.open, row.high, row.low, row.close, int(row.volume)))
        return out


class AlpacaHistory:
    """Fetches minute bars over REST and keeps stocks.db and its coverage table up to date.

    ``client`` is a StockHistoricalDataClient (preferably ``raw_data=True``); ``feed`` is 'iex' or
    'sip' from settings (alpaca-py would default to SIP, which the free plan refuses for recent
    data). ``now`` is the engine clock. One instance per thread (it uses the thread's store).
    """

    def __init__(self, client: Any, store: MarketStore, calendar: MarketCalendar, feed: str, *,
                 now: Callable[[], datetime] | None = None, batch_sessions: int = BATCH_SESSIONS) -> None:
        from alpaca.data.enums import DataFeed

        if feed not in ("iex", "sip"):
            raise ValueError(f"market data feed must be 'iex' or 'sip', not {feed!r}")
        self._feed = DataFeed(feed)
        if batch_sessions < 1:
            raise ValueError("batch_sessions must be at least 1")
        self._client = client
        self._store = store
        self._calendar = calendar
        self._now = now or (lambda: datetime.now(timezone.utc))
        self._batch = batch_sessions
        self._secrets = client_secrets(client)
        self._parser = _BarParser(calendar)
        # (symbol, session) -> epoch second up to which this process fetched the session in progress.
        self._tail: dict[tuple[str, date], int] = {}
        self.requests = 0  # REST bar requests made (each may follow several pages)

    @classmethod
    def from_settings(cls, settings: Settings, store: MarketStore, calendar: MarketCalendar, *,
                      now: Callable[[], datetime] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                      retries: int = DEFAULT_RETRIES, retry_wait_s: float = DEFAULT_RETRY_WAIT_S) -> AlpacaHistory:
        """A history fetcher on the settings' keys, data URL and feed."""
        client = make_data_client(settings, timeout_s=timeout_s, retries=retries, retry_wait_s=retry_wait_s)
        return cls(client, store, calendar, settings.feed, now=now)

    @property
    def feed(self) -> str:
        """'iex' or 'sip'."""
        return self._feed.value

    # -- raw fetch -------------------------------------------------------------------------

    def _fetch(self, symbol: str, start_ts: int, end_ts: int) -> list[Bar]:
        """Regular-session minute bars with ``start_ts <= ts <= end_ts``, oldest first."""
        from alpaca.data.requests import StockBarsRequest
        from alpaca.data.timeframe import TimeFrame

        if end_ts < start_ts:
            return []
        request = StockBarsRequest(
            symbol_or_symbols=symbol, timeframe=TimeFrame.Minute, feed=self._feed,
            start=datetime.fromtimestamp(start_ts, timezone.utc), end=datetime.fromtimestamp(end_ts, timezone.utc))
        self.requests += 1
        try:
            raw = self._client.get_stock_bars(request)  # follows next_page_token, 10,000 bars a page
        except Exception as exc:  # noqa: BLE001 - classified; anything unknown re-raised
            failure = classify_error(exc, self._secrets)
            if failure is None:
                raise
            text = f"cannot fetch {symbol} bars from Alpaca: {failure.message}"
            if failure.transient:
                raise MarketDataUnavailable(text) from None
            if failure.status == 401:
                text += " (check ALPACA_API_KEY/ALPACA_SECRET)"
            elif failure.status == 403 and self._feed.value == "sip":
                text += " (the free plan has no recent SIP data: set ALPACA_FEED=iex)"
            raise MarketDataError(text) from None
        rows = raw.get(symbol, ()) if isinstance(raw, dict) else raw.data.get(symbol, ())
        bars = self._parser.parse(rows, start_ts, end_ts)
        if any(bars[i].ts >= bars[i + 1].ts for i in range(len(bars) - 1)):
            bars = sorted({b.ts: b for b in bars}.values())
        return bars

    def fetch_bars(self, symbol: str, start: datetime, end: datetime) -> list[Bar]:
        """1-minute regular-session bars from ``start`` to ``end`` (inclusive), oldest first; not stored."""
        check_symbol_format(symbol)
        return self._fetch(symbol, _epoch_of(start, "start"), _epoch_of(end, "end"))

    def _store_bars(self, symbol: str, bars: list[Bar]) -> int:
        if not bars:
            return 0
        result = self._store.upsert_bars(symbol, bars, source=BarSource.ALPACA)
        if result.rejected:
            log.warning("%s: %d bar(s) from Alpaca refused, e.g. %s", symbol, result.rejected,
                        result.rejected_reasons[0] if result.rejected_reasons else "?")
        return result.stored

    # -- sessions --------------------------------------------------------------------------

    def _open_ts(self, session: date) -> int:
        return to_epoch(self._calendar.session_open(session))

    def _close_ts(self, session: date) -> int:
        return to_epoch(self._calendar.session_close(session))

    def _batches(self, sessions: list[date]) -> list[list[date]]:
        """Runs of calendar-consecutive sessions, at most ``batch_sessions`` long."""
        batches: list[list[date]] = []
        for session in sessions:
            if batches and len(batches[-1]) < self._batch and \
                    self._calendar.next_session(batches[-1][-1]) == session:
                batches[-1].append(session)
            else:
                batches.append([session])
        return batches

    def _fetch_missing(self, symbol: str, missing: list[date], now_ts: int,
                       progress: ProgressFn | None = None) -> int:
        """Fetch sessions coverage lacks; cover the completed ones. Returns bars stored."""
        total, done, stored = len(missing), 0, 0
        if progress:
            progress(0, total)
        for batch in self._batches(missing):
            complete = [s for s in batch if self._close_ts(s) + COVERAGE_SETTLE_S <= now_ts]
            if complete:
                bars = self._fetch(symbol, self._open_ts(complete[0]), self._close_ts(complete[-1]) - 1)
                stored += self._store_bars(symbol, bars)
                self._store.record_coverage(symbol, complete, source=BarSource.ALPACA)
            for session in batch[len(complete):]:  # in progress or just closed: never covered
                stored += self._fetch_tail(symbol, session, now_ts)
            done += len(batch)
            if progress:
                progress(done, total)
        return stored

    def _fetch_tail(self, symbol: str, session: date, now_ts: int) -> int:
        """The part of an uncovered recent session this process has not fetched yet."""
        key = (symbol, session)
        start = max(self._open_ts(session), self._tail.get(key, 0))
        end = min(self._close_ts(session), now_ts // _MINUTE * _MINUTE) - 1  # completed minutes only
        if end < start:
            return 0
        stored = self._store_bars(symbol, self._fetch(symbol, start, end))
        self._tail[key] = end + 1
        return stored

    def _started_sessions(self, start: date, end: date, now_ts: int) -> list[date]:
        first, last = self._calendar.first_day, self._calendar.last_day
        start, end = max(start, first), min(end, last)
        if end < start:
            return []
        return [s for s in self._calendar.sessions_between(start, end) if self._open_ts(s) <= now_ts]

    def backfill(self, symbol: str, start: date, end: date, progress: ProgressFn | None = None, *,
                 now: datetime | None = None) -> BackfillSummary:
        """Fetch every session from ``start`` to ``end`` (New York days, inclusive) coverage lacks.

        ``progress(done, total)`` is called with sessions done out of sessions to fetch.
        Sessions that have not opened yet are ignored.
        """
        check_symbol_format(symbol)
        if end < start:
            raise ValueError(f"the end date {end} is before the start date {start}")
        now_ts = to_epoch(_instant(now, "now") if now is not None else self._now())
        sessions = self._calendar.sessions_between(start, end)
        sessions = [s for s in sessions if self._open_ts(s) <= now_ts]
        missing = self._store.missing_sessions(symbol, sessions)
        stored = self._fetch_missing(symbol, missing, now_ts, progress)
        return BackfillSummary(sessions_fetched=len(missing), bars_stored=stored,
                               sessions_present=len(sessions) - len(missing))

    def _ensure(self, symbol: str, sessions: list[date], now_ts: int) -> None:
        self._fetch_missing(symbol, self._store.missing_sessions(symbol, sessions), now_ts)

    # -- the seed's smart fetch -----------------------------------------------------------

    def get_data_for_algorithm(self, symbol: str, requirement_type: str, **kw: Any) -> list[Bar]:
        """Bars an algorithm asks for, oldest first, fetching only sessions coverage lacks.

        ``'last_n_bars'``: ``n`` (default 200) bars strictly before ``before_timestamp`` (aware
        datetime or UTC text; default now). ``'time_range'``: bars with ``start <= ts <= end``.
        """
        check_symbol_format(symbol)
        now = self._now()
        if requirement_type == "last_n_bars":
            unknown = set(kw) - {"n", "before_timestamp"}
            if unknown:
                raise ValueError(f"last_n_bars takes n and before_timestamp, not {', '.join(sorted(unknown))}")
            n = kw.get("n", 200)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"n must be a whole number of bars >= 0, got {n!r}")
            before = _instant(kw.get("before_timestamp", now), "before_timestamp")
            return self._last_n_bars(symbol, n, to_epoch(before), to_epoch(now))
        if requirement_type == "time_range":
            unknown = set(kw) - {"start", "end"}
            if unknown or "start" not in kw or "end" not in kw:
                raise ValueError("time_range takes start and end (aware datetimes or UTC text)")
            start_ts = to_epoch(_instant(kw["start"], "start"))
            end_ts = to_epoch(_instant(kw["end"], "end"))
            if end_ts < start_ts:
                raise ValueError("time_range end is before its start")
            return self._time_range(symbol, start_ts, end_ts, to_epoch(now))
        raise ValueError(f"unknown requirement type {requirement_type!r}: use 'last_n_bars' or 'time_range'")

    def _ny_day(self, ts: int) -> date:
        return datetime.fromtimestamp(ts, NEW_YORK).date()

    def _last_n_bars(self, symbol: str, n: int, before_ts: int, now_ts: int) -> list[Bar]:
        if n == 0:
            return []
        limit_ts = min(before_ts, now_ts)
        day = min(self._ny_day(limit_ts - 1), self._calendar.last_day)
        cap = math.ceil(n / FULL_SESSION_BARS) + LOOKBACK_EXTRA_SESSIONS
        step = math.ceil(n / FULL_SESSION_BARS) + 1
        window: list[date] = []  # newest first
        cursor = day if self._calendar.is_session(day) and self._open_ts(day) < limit_ts \
            else self._calendar.previous_session(day)
        while True:
            added: list[date] = []
            while len(added) < step and len(window) + len(added) < cap:
                added.append(cursor)
                try:
                    cursor = self._calendar.previous_session(cursor)
                except ValueError:  # the calendar's first day: nothing older to ask for
                    break
            window.extend(added)
            self._ensure(symbol, sorted(added), now_ts)
            bars = self._store.last_bars(symbol, n, before_ts)
            # Complete once n bars were found inside sessions already made sure of.
            if (len(bars) >= n and bars[0].ts >= self._open_ts(window[-1])) or len(window) >= cap \
                    or not added or window[-1] == cursor:
                return bars
            step *= 2

    def _time_range(self, symbol: str, start_ts: int, end_ts: int, now_ts: int) -> list[Bar]:
        sessions = self._started_sessions(self._ny_day(start_ts), self._ny_day(end_ts), now_ts)
        self._ensure(symbol, sessions, now_ts)
        return self._store.bars_between(symbol, start_ts, end_ts)

    # -- stream gaps -----------------------------------------------------------------------

    def fill_gap(self, symbol: str, start: datetime | int, end: datetime | int) -> list[Bar]:
        """Fetch and store ``start``..``end`` (inclusive) even inside a covered or current session.

        For minutes the stream missed while reconnecting. Returns the bars fetched, oldest first.
        """
        check_symbol_format(symbol)
        bars = self._fetch(symbol, _epoch_of(start, "start"), _epoch_of(end, "end"))
        self._store_bars(symbol, bars)
        return bars


def default_backfill_start(end: date, sessions: int, calendar: MarketCalendar) -> date:
    """The session ``sessions`` trading days before ``end`` (for 'the last N sessions')."""
    day = end
    for _ in range(sessions):
        day = calendar.previous_session(day)
    return day

