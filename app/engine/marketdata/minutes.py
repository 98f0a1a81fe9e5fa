"""Minute arithmetic, in one place: bar minutes are whole UTC minutes, as epoch seconds or datetimes.

A bar stamped T covers [T, T + 60 s). "The last complete minute" at instant ``now`` is the bar
that ended at or before ``now``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

MINUTE_S = 60
ONE_MINUTE = timedelta(minutes=1)


def floor_ts(ts: int | float) -> int:
    """The start of the minute holding epoch second ``ts``."""
    return int(ts // MINUTE_S) * MINUTE_S


def last_complete_ts(now_ts: int | float) -> int:
    """The start of the last minute that is complete at epoch second ``now_ts``."""
    return floor_ts(now_ts) - MINUTE_S


def _utc_epoch(at: datetime) -> float:
    if not isinstance(at, datetime):
        raise TypeError(f"expected an aware UTC datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()}: pass an aware UTC datetime")
    return at.timestamp()


def minute_floor(at: datetime) -> datetime:
    """``at`` in UTC with seconds and microseconds dropped (the start of its bar minute)."""
    return datetime.fromtimestamp(floor_ts(_utc_epoch(at)), tz=timezone.utc)


def ceil_minute(at: datetime) -> datetime:
    """The first whole minute at or after ``at``."""
    floor = minute_floor(at)
    return floor if floor == at else floor + ONE_MINUTE
