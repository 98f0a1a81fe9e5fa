"""Clock implementations."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from app.engine.marketdata.clock import Clock, ManualClock, RealClock, SimClock

START = datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc)


class FakeMonotonic:
    """A monotonic source the test moves by hand (real seconds)."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


def test_all_clocks_satisfy_the_protocol() -> None:
    for clock in (RealClock(), SimClock(START), ManualClock(START)):
        assert isinstance(clock, Clock)
        assert clock.now().tzinfo is not None
        assert clock.speed > 0


def test_real_clock_is_utc_now() -> None:
    clock = RealClock()
    before = datetime.now(timezone.utc)
    now = clock.now()
    assert before <= now <= datetime.now(timezone.utc)
    assert now.utcoffset() == timedelta(0)


def test_real_clock_seconds_until() -> None:
    clock = RealClock()
    wait = clock.real_seconds_until(clock.now() + timedelta(seconds=10))
    assert 9.0 < wait <= 10.0
    assert clock.real_seconds_until(clock.now() - timedelta(hours=1)) == 0.0
    with pytest.raises(ValueError, match="aware"):
        clock.real_seconds_until(datetime(2024, 1, 1))


def test_sim_clock_runs_at_speed() -> None:
    mono = FakeMonotonic()
    clock = SimClock(START, speed=60.0, monotonic=mono)
    assert clock.now() == START
    mono.value += 2.5  # 2.5 real seconds = 150 clock seconds
    assert clock.now() == START + timedelta(seconds=150)


def test_sim_clock_real_seconds_until_divides_by_speed() -> None:
    mono = FakeMonotonic()
    clock = SimClock(START, speed=120.0, monotonic=mono)
    assert clock.real_seconds_until(START + timedelta(minutes=1)) == pytest.approx(0.5)
    assert clock.real_seconds_until(START - timedelta(minutes=1)) == 0.0
    mono.value += 1.0
    assert clock.real_seconds_until(START + timedelta(minutes=1)) == 0.0


def test_sim_clock_jump_to_reanchors() -> None:
    mono = FakeMonotonic()
    clock = SimClock(START, speed=10.0, monotonic=mono)
    mono.value += 100.0
    monday = datetime(2024, 1, 8, 14, 30, tzinfo=timezone.utc)
    clock.jump_to(monday)
    assert clock.now() == monday
    mono.value += 3.0
    assert clock.now() == monday + timedelta(seconds=30)


def test_sim_clock_with_real_monotonic_moves() -> None:
    clock = SimClock(START, speed=1000.0)
    time.sleep(0.01)
    assert clock.now() - START >= timedelta(seconds=5)


@pytest.mark.parametrize("speed", [0, -1.0, float("nan"), float("inf")])
def test_sim_clock_rejects_bad_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be a positive"):
        SimClock(START, speed=speed)


def test_sim_clock_rejects_naive_start_and_normalises_to_utc() -> None:
    with pytest.raises(ValueError, match="aware"):
        SimClock(datetime(2024, 1, 2, 14, 30))
    new_york = timezone(timedelta(hours=-5))
    clock = SimClock(datetime(2024, 1, 2, 9, 30, tzinfo=new_york), monotonic=FakeMonotonic())
    assert clock.now() == START
    assert clock.now().utcoffset() == timedelta(0)


def test_manual_clock_advance_and_set() -> None:
    clock = ManualClock(START)
    assert clock.now() == START
    assert clock.advance(timedelta(minutes=5)) == START + timedelta(minutes=5)
    assert clock.now() == START + timedelta(minutes=5)
    clock.set(START - timedelta(days=1))
    assert clock.now() == START - timedelta(days=1)
    assert clock.real_seconds_until(START + timedelta(days=30)) == 0.0


def test_manual_clock_rejects_negative_advance_and_naive_set() -> None:
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="non-negative"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2024, 1, 2))
    assert clock.now() == START
