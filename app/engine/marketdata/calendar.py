"""NYSE trading sessions (holidays, early closes, daylight-saving time) from exchange_calendars XNYS.

Everything in and out is UTC: aware datetimes for instants, ``datetime.date`` for sessions
(the New York trading day), epoch seconds for bar minutes (a bar's opening minute).
"""

from __future__ import annotations

import bisect
import functools
import math
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from app.engine.marketdata import calendar_cache

CALENDAR_NAME = "XNYS"
CALENDAR_START = date(2015, 1, 1)
# Far enough ahead for any order or sim run; counted from today at each process start so it keeps
# moving (the calendar cache file is per last day).
CALENDAR_YEARS_AHEAD = 2

_DAY = 86_400
_MINUTE = 60


class CalendarRangeError(ValueError):
    """A date or instant outside the span the calendar was built for."""


@dataclass(frozen=True)
class _Tables:
    """Plain-Python copy of the XNYS schedule: lookups never touch pandas."""

    first_day: date
    last_day: date
    sessions: tuple[date, ...]
    opens: tuple[int, ...]  # epoch seconds, parallel to ``sessions``
    closes: tuple[int, ...]
    by_session: dict[date, tuple[int, int]]
    # NYSE sessions lie inside one UTC day (13:30-21:00Z at the widest), so the UTC day
    # number of a timestamp finds its session with one dict lookup.
    by_utc_day: dict[int, tuple[int, int]]
    first_ts: int  # midnight UTC of first_day
    end_ts: int  # midnight UTC after last_day


@functools.lru_cache(maxsize=1)
def _tables() -> _Tables:
    """The XNYS schedule once per process, flattened: from the calendar cache file when it has it."""
    last_day = date.today() + timedelta(days=365 * CALENDAR_YEARS_AHEAD)
    cached = calendar_cache.cache_file(CALENDAR_NAME, CALENDAR_START, last_day)
    schedule = calendar_cache.load(cached)
    if schedule is None:
        schedule = _build_schedule(last_day)
        calendar_cache.save(cached, schedule)
    sessions, opens, closes = schedule
    by_session = {day: (o, c) for day, o, c in zip(sessions, opens, closes)}
    by_utc_day = {o // _DAY: (o, c) for o, c in zip(opens, closes)}
    first_ts = int(datetime(CALENDAR_START.year, CALENDAR_START.month, CALENDAR_START.day,
                            tzinfo=timezone.utc).timestamp())
    end_ts = int(datetime(last_day.year, last_day.month, last_day.day, tzinfo=timezone.utc).timestamp()) + _DAY
    return _Tables(CALENDAR_START, last_day, sessions, opens, closes, by_session, by_utc_day, first_ts, end_ts)


def _build_schedule(last_day: date) -> calendar_cache.Schedule:
    """Sessions, opens and closes from exchange_calendars (about 1.2 s here: it imports pandas)."""
    import exchange_calendars  # deferred: importing pandas is slow and only needed here

    with warnings.catch_warnings():
        # exchange_calendars trips pandas deprecation warnings in its own code; nothing to act on here.
        warnings.simplefilter("ignore")
        calendar = exchange_calendars.get_calendar(
            CALENDAR_NAME, start=CALENDAR_START.isoformat(), end=last_day.isoformat()
        )
    schedule = calendar.schedule
    sessions = tuple(ts.date() for ts in schedule.index)
    opens = tuple(int(ts.timestamp()) for ts in schedule["open"])
    closes = tuple(int(ts.timestamp()) for ts in schedule["close"])
    return sessions, opens, closes


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _epoch(at: datetime) -> float:
    if not isinstance(at, datetime):
        raise TypeError(f"expected an aware UTC datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass an aware UTC datetime")
    return at.timestamp()


class MarketCalendar:
    """NYSE sessions, open/close instants and bar minutes. Cheap to construct: the schedule is cached per process."""

    def __init__(self) -> None:
        self._t = _tables()

    # -- range ---------------------------------------------------------------------------

    @property
    def first_day(self) -> date:
        """First date the calendar covers."""
        return self._t.first_day

    @property
    def last_day(self) -> date:
        """Last date the calendar covers."""
        return self._t.last_day

    def _check_day(self, day: date) -> date:
        if isinstance(day, datetime) or not isinstance(day, date):
            raise TypeError(f"expected a datetime.date, got {type(day).__name__}")
        if not self._t.first_day <= day <= self._t.last_day:
            raise CalendarRangeError(
                f"{day.isoformat()} is outside the market calendar "
                f"({self._t.first_day.isoformat()} to {self._t.last_day.isoformat()})"
            )
        return day

    def _check_ts(self, ts: float) -> float:
        if not self._t.first_ts <= ts < self._t.end_ts:
            raise CalendarRangeError(
                f"{_utc(int(ts)).isoformat()} is outside the market calendar "
                f"({self._t.first_day.isoformat()} to {self._t.last_day.isoformat()})"
            )
        return ts

    # -- instants ------------------------------------------------------------------------

    def is_open(self, at: datetime) -> bool:
        """True when the market is open at ``at`` (open <= at < close)."""
        ts = self._check_ts(_epoch(at))
        bounds = self._t.by_utc_day.get(int(ts // _DAY))
        return bounds is not None and bounds[0] <= ts < bounds[1]

    def next_open(self, at: datetime) -> datetime:
        """The first session open strictly after ``at``."""
        ts = self._check_ts(_epoch(at))
        i = bisect.bisect_right(self._t.opens, ts)
        if i >= len(self._t.opens):
            raise CalendarRangeError(f"no session opens after {at.isoformat()} within the market calendar")
        return _utc(self._t.opens[i])

    def next_close(self, at: datetime) -> datetime:
        """The first session close strictly after ``at``: the current session's close while open."""
        ts = self._check_ts(_epoch(at))
        i = bisect.bisect_right(self._t.closes, ts)
        if i >= len(self._t.closes):
            raise CalendarRangeError(f"no session closes after {at.isoformat()} within the market calendar")
        return _utc(self._t.closes[i])

    # -- sessions ------------------------------------------------------------------------

    def is_session(self, day: date) -> bool:
        """True when ``day`` is a trading day."""
        return self._check_day(day) in self._t.by_session

    def _bounds(self, day: date) -> tuple[int, int]:
        bounds = self._t.by_session.get(self._check_day(day))
        if bounds is None:
            raise ValueError(f"{day.isoformat()} ({day.strftime('%A')}) is not a trading session")
        return bounds

    def session_open(self, day: date) -> datetime:
        """The open instant of session ``day``. ValueError if the market does not trade that day."""
        return _utc(self._bounds(day)[0])

    def session_close(self, day: date) -> datetime:
        """The close instant of session ``day`` (e.g. 21:00Z; the last bar starts a minute earlier)."""
        return _utc(self._bounds(day)[1])

    def session_minutes(self, day: date) -> list[int]:
        """Epoch seconds of every bar minute of session ``day``: 390 on a full day, 210 on an early close."""
        return list(self.session_minute_range(day))

    def session_minute_range(self, day: date) -> range:
        """:meth:`session_minutes` as a range (no list of 390 numbers, for a replay of years)."""
        open_ts, close_ts = self._bounds(day)
        return range(open_ts, close_ts, _MINUTE)

    def minute_count(self, day: date) -> int:
        """Number of bar minutes in session ``day``."""
        open_ts, close_ts = self._bounds(day)
        return (close_ts - open_ts) // _MINUTE

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Trading days from ``start`` to ``end`` inclusive, oldest first (empty if start > end)."""
        self._check_day(start)
        self._check_day(end)
        sessions = self._t.sessions
        return list(sessions[bisect.bisect_left(sessions, start) : bisect.bisect_right(sessions, end)])

    def open_minutes_between(self, start: datetime, end: datetime) -> int:
        """How many bar minutes start in ``[start, end)`` (``start`` on a whole minute)."""
        if end <= start:
            return 0
        lo, hi = _epoch(start), _epoch(end)
        count = 0
        for day in self.sessions_between(start.date() - timedelta(days=1), end.date()):
            open_ts, close_ts = self._bounds(day)
            first, last = max(open_ts, lo), min(close_ts, hi)
            if last > first:
                count += math.ceil((last - first) / _MINUTE)
        return count

    def previous_session(self, day: date) -> date:
        """The last trading day strictly before ``day`` (``day`` need not be a session)."""
        self._check_day(day)
        i = bisect.bisect_left(self._t.sessions, day)
        if i == 0:
            raise CalendarRangeError(f"no session before {day.isoformat()} within the market calendar")
        return self._t.sessions[i - 1]

    def next_session(self, day: date) -> date:
        """The first trading day strictly after ``day`` (``day`` need not be a session)."""
        self._check_day(day)
        i = bisect.bisect_right(self._t.sessions, day)
        if i >= len(self._t.sessions):
            raise CalendarRangeError(f"no session after {day.isoformat()} within the market calendar")
        return self._t.sessions[i]

    # -- bar minutes (epoch seconds) -----------------------------------------------------

    def is_session_minute(self, ts: int) -> bool:
        """True when ``ts`` is the start of a bar minute inside a session. Hot path (~1 µs): one dict lookup."""
        bounds = self._t.by_utc_day.get(ts // _DAY)
        if bounds is not None:
            return bounds[0] <= ts < bounds[1] and ts % _MINUTE == 0
        self._check_ts(ts)
        return False

    def session_of(self, ts: int) -> date | None:
        """The session whose bar minutes contain instant ``ts`` (open <= ts < close), else None."""
        bounds = self._t.by_utc_day.get(ts // _DAY)
        if bounds is None:
            self._check_ts(ts)
            return None
        if not bounds[0] <= ts < bounds[1]:
            return None
        # The session date is the New York date, which equals the UTC date of any in-session instant.
        return _utc(bounds[0]).date()
