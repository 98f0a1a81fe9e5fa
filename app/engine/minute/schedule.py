"""When to run a trading minute: the scheduling policy as pure functions of the calendar and times.

The orchestrator wakes ``offset`` after each session minute T (so T's bar is complete) and runs the
cycle for T. A cycle that overran the wake-up of the minutes after it runs the earliest minute not
more than the catch-up window late (:func:`catch_up_window`), late, but never after the close (its
orders would wait a night).
A wake-up later than that (machine asleep, clock jump) trades the current minute instead, and
every session minute that got no cycle is counted as missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from app.engine.marketdata.minutes import ONE_MINUTE, ceil_minute

CATCH_UP = timedelta(seconds=60)
# On an accelerated simulated clock 60 simulated seconds are a fraction of a real second (200 ms at
# 300×): one scheduling hiccup of a busy machine. There the window is at least this much real time:
# a starved process (a loaded 2-core machine, a Pi) was seen taking 1.4 s over one 20-card minute,
# which with 2 s passed minutes over instead of catching them up.
SIM_CATCH_UP_REAL_S = 5.0
EARLY_TOLERANCE = timedelta(milliseconds=5)  # a timer that fires this early is on time


class SessionCalendar(Protocol):
    """What the policy needs of :class:`~app.engine.marketdata.calendar.MarketCalendar`."""

    def is_open(self, at: datetime) -> bool: ...  # noqa: D102

    def next_open(self, after: datetime) -> datetime: ...  # noqa: D102

    def open_minutes_between(self, start: datetime, end: datetime) -> int: ...  # noqa: D102


def next_cycle_minute(calendar: SessionCalendar, now: datetime, offset_s: float) -> datetime:
    """The next session minute T whose wake-up instant T + offset is not yet past."""
    candidate = ceil_minute(now - timedelta(seconds=offset_s))
    if calendar.is_open(candidate):
        return candidate
    return calendar.next_open(candidate - timedelta(microseconds=1))


def following_minute(calendar: SessionCalendar, minute: datetime) -> datetime:
    """The session minute after ``minute`` (the next open after a session's last minute)."""
    following = minute + ONE_MINUTE
    return following if calendar.is_open(following) else calendar.next_open(minute)


def catch_up_window(speed: float = 1.0) -> timedelta:
    """How late a minute may still be run: 60 s, or :data:`SIM_CATCH_UP_REAL_S` of real time at ``speed``."""
    return max(CATCH_UP, timedelta(seconds=SIM_CATCH_UP_REAL_S * speed)) if speed > 1 else CATCH_UP


def minute_to_schedule(calendar: SessionCalendar, now: datetime, offset_s: float,
                       last_run: datetime | None, catch_up: timedelta = CATCH_UP) -> datetime:
    """The minute whose cycle to schedule next, catching up an overrun within the session."""
    minute = next_cycle_minute(calendar, now, offset_s)
    if last_run is not None and calendar.is_open(now):
        late = max(following_minute(calendar, last_run), next_cycle_minute(calendar, now - catch_up, offset_s))
        minute = min(minute, late)
    return minute


@dataclass(frozen=True, slots=True)
class Wake:
    """What a timer wake-up should do: ``run`` the cycle of ``minute``, or ``reschedule``.

    ``why`` explains a reschedule or a replaced minute (for the log); empty when on time.
    """

    action: str  # "run" | "reschedule"
    minute: datetime | None = None
    why: str = ""


def on_wake(calendar: SessionCalendar, now: datetime, scheduled: datetime, offset_s: float,
            catch_up: timedelta = CATCH_UP) -> Wake:
    """Decide what a wake-up at ``now`` for the cycle of ``scheduled`` does."""
    wake_at = scheduled + timedelta(seconds=offset_s)
    if now < wake_at - EARLY_TOLERANCE:
        return Wake("reschedule", why="early")  # a capped long sleep: not there yet
    if not calendar.is_open(now):
        return Wake("reschedule", why="after the close")  # missed, never traded late
    if now - wake_at > catch_up:
        current = next_cycle_minute(calendar, now - catch_up, offset_s)
        if current > now:
            return Wake("reschedule", why="too late, and no current minute yet")
        return Wake("run", current, why=f"{(now - wake_at).total_seconds():.0f} s late: the current minute instead")
    return Wake("run", scheduled)


def missed_minutes(calendar: SessionCalendar, last_run: datetime | None, minute: datetime) -> int:
    """Session minutes strictly between the last cycle and ``minute`` that got no cycle."""
    if last_run is None or minute <= last_run:
        return 0
    follow = following_minute(calendar, last_run)
    return calendar.open_minutes_between(follow, minute) if minute > follow else 0
