"""MarketCalendar against the real exchange_calendars XNYS calendar."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

import pytest

from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.engine.marketdata.minutes import minute_floor
from tests.engine.time_helpers import ep, utc




def test_winter_day_first_bar_1430z_and_390_bars(cal: MarketCalendar) -> None:
    day = date(2024, 1, 2)
    minutes = cal.session_minutes(day)
    assert cal.session_open(day) == utc(2024, 1, 2, 14, 30)
    assert cal.session_close(day) == utc(2024, 1, 2, 21, 0)
    assert len(minutes) == 390 == cal.minute_count(day)
    assert minutes[0] == ep(2024, 1, 2, 14, 30)
    assert minutes[-1] == ep(2024, 1, 2, 20, 59)
    assert all(b - a == 60 for a, b in zip(minutes, minutes[1:]))


def test_summer_day_first_bar_1330z(cal: MarketCalendar) -> None:
    day = date(2024, 7, 1)
    assert cal.session_open(day) == utc(2024, 7, 1, 13, 30)
    assert cal.session_minutes(day)[-1] == ep(2024, 7, 1, 19, 59)
    assert cal.minute_count(day) == 390


def test_independence_day_closed(cal: MarketCalendar) -> None:
    assert not cal.is_session(date(2024, 7, 4))
    assert not cal.is_open(utc(2024, 7, 4, 15, 0))
    with pytest.raises(ValueError, match="2024-07-04.*not a trading session"):
        cal.session_open(date(2024, 7, 4))


def test_day_after_thanksgiving_early_close(cal: MarketCalendar) -> None:
    day = date(2024, 11, 29)
    assert cal.session_close(day) == utc(2024, 11, 29, 18, 0)
    minutes = cal.session_minutes(day)
    assert len(minutes) == 210
    assert minutes[-1] == ep(2024, 11, 29, 17, 59)
    assert cal.is_open(utc(2024, 11, 29, 17, 59))
    assert not cal.is_open(utc(2024, 11, 29, 18, 0))


def test_saturday_closed(cal: MarketCalendar) -> None:
    saturday = date(2024, 6, 8)
    assert saturday.weekday() == 5
    assert not cal.is_session(saturday)
    assert not cal.is_open(utc(2024, 6, 8, 15, 0))
    with pytest.raises(ValueError, match="Saturday"):
        cal.session_minutes(saturday)


@pytest.mark.parametrize(
    ("before", "after", "before_open", "after_open"),
    [
        # US clocks spring forward on Sunday 2024-03-10.
        (date(2024, 3, 8), date(2024, 3, 11), utc(2024, 3, 8, 14, 30), utc(2024, 3, 11, 13, 30)),
        # ... and fall back on Sunday 2024-11-03.
        (date(2024, 11, 1), date(2024, 11, 4), utc(2024, 11, 1, 13, 30), utc(2024, 11, 4, 14, 30)),
    ],
)
def test_dst_switch_weeks(cal, before, after, before_open, after_open) -> None:
    assert cal.session_open(before) == before_open
    assert cal.session_open(after) == after_open
    assert cal.session_close(before) - cal.session_open(before) == timedelta(hours=6, minutes=30)
    assert cal.session_close(after) - cal.session_open(after) == timedelta(hours=6, minutes=30)
    assert cal.next_session(before) == after
    assert cal.previous_session(after) == before


def test_next_open_from_friday_evening_is_monday(cal: MarketCalendar) -> None:
    friday_evening = utc(2024, 6, 7, 23, 0)
    assert cal.next_open(friday_evening) == utc(2024, 6, 10, 13, 30)
    assert cal.next_close(friday_evening) == utc(2024, 6, 10, 20, 0)


def test_next_open_across_holiday(cal: MarketCalendar) -> None:
    # Wednesday 2024-07-03 is itself an early close (17:00Z); Thursday the 4th is a holiday.
    assert cal.session_close(date(2024, 7, 3)) == utc(2024, 7, 3, 17, 0)
    assert cal.next_open(utc(2024, 7, 3, 18, 0)) == utc(2024, 7, 5, 13, 30)
    assert cal.next_session(date(2024, 7, 3)) == date(2024, 7, 5)
    assert cal.previous_session(date(2024, 7, 5)) == date(2024, 7, 3)


def test_is_open_at_exact_boundaries(cal: MarketCalendar) -> None:
    open_at = utc(2024, 1, 2, 14, 30)
    close_at = utc(2024, 1, 2, 21, 0)
    assert not cal.is_open(open_at - timedelta(microseconds=1))
    assert cal.is_open(open_at)
    assert cal.is_open(close_at - timedelta(microseconds=1))
    assert not cal.is_open(close_at)


def test_next_open_is_strictly_after_and_next_close_while_open(cal: MarketCalendar) -> None:
    open_at = utc(2024, 1, 2, 14, 30)
    assert cal.next_open(open_at) == utc(2024, 1, 3, 14, 30)
    assert cal.next_open(open_at - timedelta(seconds=1)) == open_at
    assert cal.next_close(utc(2024, 1, 2, 15, 0)) == utc(2024, 1, 2, 21, 0)
    assert cal.next_close(utc(2024, 1, 2, 21, 0)) == utc(2024, 1, 3, 21, 0)


def test_is_open_accepts_other_time_zones(cal: MarketCalendar) -> None:
    new_york_winter = timezone(timedelta(hours=-5))
    assert cal.is_open(datetime(2024, 1, 2, 9, 30, tzinfo=new_york_winter))
    assert not cal.is_open(datetime(2024, 1, 2, 9, 29, tzinfo=new_york_winter))


def test_naive_datetime_refused(cal: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        cal.is_open(datetime(2024, 1, 2, 15, 0))


def test_is_session_minute_matches_session_minutes_over_a_month(cal: MarketCalendar) -> None:
    expected: set[int] = set()
    for day in cal.sessions_between(date(2024, 11, 1), date(2024, 11, 30)):
        expected.update(cal.session_minutes(day))
    start, end = ep(2024, 11, 1), ep(2024, 12, 1)
    found = {ts for ts in range(start, end, 60) if cal.is_session_minute(ts)}
    assert found == expected
    # 21 weekdays minus Thanksgiving (28th): 19 full days + the 210-bar early close on the 29th.
    assert len(expected) == 19 * 390 + 210
    assert not cal.is_session_minute(ep(2024, 11, 4, 15, 0) + 30)  # not minute-aligned


def test_session_of(cal: MarketCalendar) -> None:
    assert cal.session_of(ep(2024, 1, 2, 14, 30)) == date(2024, 1, 2)
    assert cal.session_of(ep(2024, 1, 2, 20, 59, 59)) == date(2024, 1, 2)
    assert cal.session_of(ep(2024, 1, 2, 21, 0)) is None
    assert cal.session_of(ep(2024, 1, 2, 14, 29)) is None
    assert cal.session_of(ep(2024, 7, 4, 15, 0)) is None


def test_sessions_between_inclusive(cal: MarketCalendar) -> None:
    days = cal.sessions_between(date(2024, 7, 1), date(2024, 7, 8))
    assert days == [date(2024, 7, d) for d in (1, 2, 3, 5, 8)]
    assert cal.sessions_between(date(2024, 7, 8), date(2024, 7, 1)) == []
    assert cal.sessions_between(date(2024, 7, 6), date(2024, 7, 7)) == []


def test_open_minutes_between_counts_bar_minutes_across_nights_and_holidays(cal: MarketCalendar) -> None:
    assert cal.open_minutes_between(utc(2024, 6, 4, 13, 30), utc(2024, 6, 4, 13, 35)) == 5
    assert cal.open_minutes_between(utc(2024, 6, 4, 13, 35), utc(2024, 6, 4, 13, 35)) == 0
    assert cal.open_minutes_between(utc(2024, 6, 4, 19, 58), utc(2024, 6, 5, 13, 32)) == 4  # 2 + overnight 0 + 2
    # The early close of 3 July (210 bars), the closed 4th, a full 5th.
    assert cal.open_minutes_between(utc(2024, 7, 3, 0, 0), utc(2024, 7, 6, 0, 0)) == 210 + 390
    # Brute force over a week with a weekend agrees.
    start, end = utc(2024, 3, 7, 17, 3), utc(2024, 3, 12, 15, 11)
    brute = sum(1 for m in range(int((end - start).total_seconds() // 60))
                if cal.is_open(start + timedelta(minutes=m)))
    assert cal.open_minutes_between(start, end) == brute


def test_previous_and_next_session_from_non_session(cal: MarketCalendar) -> None:
    assert cal.previous_session(date(2024, 6, 9)) == date(2024, 6, 7)  # Sunday
    assert cal.next_session(date(2024, 6, 8)) == date(2024, 6, 10)  # Saturday


def test_minute_floor() -> None:
    assert minute_floor(utc(2024, 1, 2, 14, 30, 59, 999_999)) == utc(2024, 1, 2, 14, 30)
    summer = timezone(timedelta(hours=-4))
    assert minute_floor(datetime(2024, 7, 1, 9, 31, 12, tzinfo=summer)) == utc(2024, 7, 1, 13, 31)
    assert minute_floor(utc(2024, 1, 2, 14, 30)).tzinfo == timezone.utc


def test_out_of_range_is_a_clear_value_error(cal: MarketCalendar) -> None:
    with pytest.raises(CalendarRangeError, match="outside the market calendar"):
        cal.is_session(date(2001, 9, 10))
    with pytest.raises(ValueError, match="outside the market calendar"):
        cal.session_open(date(2200, 1, 2))
    with pytest.raises(ValueError, match="outside the market calendar"):
        cal.is_open(utc(2010, 1, 4, 15, 0))
    with pytest.raises(ValueError, match="outside the market calendar"):
        cal.is_session_minute(ep(2010, 1, 4, 15, 0))
    assert cal.last_day >= date.today() + timedelta(days=700)


def test_is_session_minute_is_fast(cal: MarketCalendar) -> None:
    check = cal.is_session_minute
    timestamps = list(range(ep(2024, 1, 2), ep(2024, 1, 9), 60))
    started = time.perf_counter()
    for _ in range(10):
        for ts in timestamps:
            check(ts)
    per_call = (time.perf_counter() - started) / (10 * len(timestamps))
    assert per_call < 5e-6  # ~0.2 µs here; generous for slow CI machines


def test_construction_is_cached() -> None:
    started = time.perf_counter()
    MarketCalendar()
    assert time.perf_counter() - started < 0.05
