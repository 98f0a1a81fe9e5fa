"""The engine's only source of "now": real time, simulated (accelerated) time, or hand-driven test time."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol, runtime_checkable


def _require_aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware UTC datetime, got naive {moment.isoformat()}")
    return moment.astimezone(timezone.utc)


@runtime_checkable
class Clock(Protocol):
    """What the engine asks for the time. ``speed`` is clock seconds per real second."""

    speed: float

    def now(self) -> datetime:
        """The current clock time, an aware UTC datetime."""
        ...

    def real_seconds_until(self, moment: datetime) -> float:
        """Real wall seconds to wait until this clock reads ``moment``; 0 if it already has."""
        ...


class RealClock:
    """Wall-clock time."""

    speed: float = 1.0

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(timezone.utc)

    def real_seconds_until(self, moment: datetime) -> float:
        """Seconds from now until ``moment``; 0 if past."""
        moment = _require_aware(moment, "moment")
        return max(0.0, (moment - self.now()).total_seconds())

    def __repr__(self) -> str:
        return "RealClock()"


class SimClock:
    """Simulated time: starts at ``start`` and runs ``speed`` times faster than real time.

    ``monotonic`` is injectable so tests can drive real-time progress deterministically.
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        speed = float(speed)
        if not speed > 0 or speed == float("inf"):
            raise ValueError(f"SimClock speed must be a positive finite number (got {speed!r})")
        self.speed = speed
        self._monotonic = monotonic
        # One tuple swapped as a whole, so a reader on another thread never sees half an anchor.
        self._anchor = (_require_aware(start, "SimClock start"), monotonic())
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """``start + (real seconds elapsed since the anchor) × speed``."""
        start, t0 = self._anchor
        return start + timedelta(seconds=(self._monotonic() - t0) * self.speed)

    def real_seconds_until(self, moment: datetime) -> float:
        """Real seconds until this clock reads ``moment`` (clock seconds ÷ speed); 0 if past."""
        moment = _require_aware(moment, "moment")
        return max(0.0, (moment - self.now()).total_seconds() / self.speed)

    def jump_to(self, moment: datetime) -> None:
        """Re-anchor the clock so it reads ``moment`` now (e.g. to skip a closed night)."""
        moment = _require_aware(moment, "moment")
        with self._lock:
            self._anchor = (moment, self._monotonic())

    def __repr__(self) -> str:
        return f"SimClock(now={self.now().isoformat()}, speed={self.speed})"


class ManualClock:
    """Test clock that moves only when told; nothing ever needs to wait for it."""

    speed: float = 1.0

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start, "ManualClock start")

    def now(self) -> datetime:
        """The time last set."""
        return self._now

    def real_seconds_until(self, moment: datetime) -> float:
        """Always 0: a manual clock is advanced by the test, not by waiting."""
        _require_aware(moment, "moment")
        return 0.0

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` (must not be negative); returns the new time."""
        if delta < timedelta(0):
            raise ValueError(f"ManualClock.advance needs a non-negative timedelta (got {delta})")
        self._now = self._now + delta
        return self._now

    def set(self, moment: datetime) -> None:
        """Set the time to ``moment`` (any aware datetime, forwards or back)."""
        self._now = _require_aware(moment, "moment")

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now.isoformat()})"
