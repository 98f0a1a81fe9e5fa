"""PinGuard against a real system.db: hashing, lockouts, persistence across restarts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.system.pin import DEFAULT_PIN, MAX_LOCKOUT_S, PinError, PinGuard, PinResult, trivial_pin_reason
from app.storage.system_store import SystemStore

T0 = datetime(2024, 6, 4, 14, 30, tzinfo=timezone.utc)


class SettableNow:
    """A real settable clock standing in for the engine's SimClock.now."""

    def __init__(self) -> None:
        self.moment = T0

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> SettableNow:
    return SettableNow()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "system.db"


@pytest.fixture
def store(db: Path):
    with SystemStore(db) as s:
        yield s


@pytest.fixture
def guard(store: SystemStore, clock: SettableNow) -> PinGuard:
    return PinGuard(store, clock)


def fail(guard: PinGuard, times: int) -> PinResult:
    result = None
    for _ in range(times):
        result = guard.verify("0000")
    return result


def config_values(store: SystemStore) -> dict[str, str]:
    return dict(store.connection.execute("SELECT key, value FROM system_config").fetchall())


def test_default_pin_works_and_is_flagged(guard: PinGuard, store: SystemStore) -> None:
    assert guard.is_default() is True
    result = guard.verify(DEFAULT_PIN)
    assert result == PinResult(ok=True, locked_until=None, tries_left=5, is_default=True,
                               message="PIN accepted.")
    values = config_values(store)
    assert "pin" not in values
    assert DEFAULT_PIN not in values.values()
    assert len(values["pin_hash"]) == 64 and len(values["pin_salt"]) == 32


def test_wrong_pin_counts_down(guard: PinGuard) -> None:
    results = [guard.verify(p) for p in ("1111", "", "20200", "２０２０")]
    assert [r.ok for r in results] == [False] * 4
    assert [r.tries_left for r in results] == [4, 3, 2, 1]
    assert results[0].message == "Wrong PIN. 4 tries left."
    assert results[-1].message == "Wrong PIN. 1 try left."
    assert all(r.locked_until is None for r in results)


def test_non_text_and_huge_input_are_just_wrong(guard: PinGuard) -> None:
    assert guard.verify(None).ok is False  # type: ignore[arg-type]
    assert guard.verify("2020" * 1000).ok is False
    assert guard.verify(DEFAULT_PIN).ok is True


def test_success_resets_the_failure_count(guard: PinGuard) -> None:
    fail(guard, 4)
    assert guard.verify(DEFAULT_PIN).ok
    assert guard.verify("9999").tries_left == 4


def test_lockout_refuses_even_the_right_pin_then_expires(guard: PinGuard, clock: SettableNow) -> None:
    fifth = fail(guard, 5)
    assert fifth.ok is False and fifth.tries_left == 0
    assert fifth.locked_until == T0 + timedelta(seconds=30)
    assert fifth.message == "Wrong PIN. Locked for 30 s."
    assert guard.lock_state() == T0 + timedelta(seconds=30)
    clock.advance(10)
    refused = guard.verify(DEFAULT_PIN)
    assert refused.ok is False and refused.locked_until == T0 + timedelta(seconds=30)
    assert refused.message == "Too many wrong tries. Try again in 20 s."
    clock.advance(20)
    assert guard.lock_state() is None
    assert guard.verify(DEFAULT_PIN).ok is True


def test_lockouts_double_and_reset_on_success(guard: PinGuard, clock: SettableNow) -> None:
    durations = []
    for _ in range(4):
        locked = fail(guard, 5)
        durations.append((locked.locked_until - clock.moment).total_seconds())
        clock.moment = locked.locked_until
    assert durations == [30, 60, 120, 240]
    assert guard.verify(DEFAULT_PIN).ok
    locked = fail(guard, 5)
    assert (locked.locked_until - clock.moment).total_seconds() == 30


def test_lockout_is_capped_at_a_day(guard: PinGuard, store: SystemStore, clock: SettableNow) -> None:
    guard.is_default()  # initialise
    store.set_config("pin_lockouts", "40")
    locked = fail(guard, 5)
    assert (locked.locked_until - clock.moment).total_seconds() == MAX_LOCKOUT_S
    assert "24 h" in locked.message


def test_lockout_survives_a_restart(db: Path, clock: SettableNow) -> None:
    with SystemStore(db) as store:
        locked = fail(PinGuard(store, clock), 5)
    clock.advance(5)
    with SystemStore(db) as store:  # a new process: new store, new guard
        guard = PinGuard(store, clock)
        assert guard.lock_state() == locked.locked_until
        assert guard.verify(DEFAULT_PIN).ok is False
        clock.advance(30)
        assert guard.verify(DEFAULT_PIN).ok is True


def test_failures_survive_a_restart(db: Path, clock: SettableNow) -> None:
    with SystemStore(db) as store:
        fail(PinGuard(store, clock), 3)
    with SystemStore(db) as store:
        assert PinGuard(store, clock).verify("1234").tries_left == 1


def test_change_pin(guard: PinGuard, store: SystemStore, db: Path, clock: SettableNow) -> None:
    old_salt = store.get_config("pin_salt")
    guard.change("73914682")
    assert guard.is_default() is False
    assert store.get_config("pin_salt") != old_salt
    assert guard.verify(DEFAULT_PIN).ok is False
    result = guard.verify("73914682")
    assert result.ok is True and result.is_default is False
    with SystemStore(db) as other:
        assert PinGuard(other, clock).verify("73914682").ok is True
    for value in config_values(store).values():
        assert "73914682" not in value


@pytest.mark.parametrize("bad", ["123", "123456789", "12a4", "", " 1234", "1234\n", "١٢٣٤", 1234, None])
def test_change_validation(guard: PinGuard, store: SystemStore, bad) -> None:
    before = config_values(store) if store.get_config("pin_hash") else None
    with pytest.raises(PinError, match="4 to 8 digits") as info:
        guard.change(bad)
    if isinstance(bad, str) and bad:
        assert bad.strip() not in str(info.value)
    assert guard.verify(DEFAULT_PIN).ok is True
    if before is not None:
        assert config_values(store)["pin_hash"] == before["pin_hash"]


def test_change_back_to_the_default_is_refused(guard: PinGuard) -> None:
    with pytest.raises(PinError, match="other than the factory default"):
        guard.change(DEFAULT_PIN)
    assert guard.is_default() is True


def test_change_clears_a_lockout(guard: PinGuard) -> None:
    fail(guard, 4)
    guard.change("55667788")
    assert guard.verify("11111111").tries_left == 4


def test_legacy_plaintext_pin_is_hashed_and_removed(store: SystemStore, clock: SettableNow) -> None:
    store.set_config("pin", "48151623")  # a seed-era system.db with a changed plaintext PIN
    guard = PinGuard(store, clock)
    assert guard.verify("48151623").ok is True
    assert guard.is_default() is False
    values = config_values(store)
    assert "pin" not in values
    assert all("48151623" not in v for v in values.values())


def test_no_digits_in_messages_or_repr(guard: PinGuard) -> None:
    guard.change("24681357")
    texts = [repr(guard)] + [repr(guard.verify(p)) for p in ("24681350", "24681357")]
    assert not any("24681357" in t or "24681350" in t for t in texts)


def test_now_defaults_to_the_real_utc_clock(store: SystemStore) -> None:
    guard = PinGuard(store)
    locked = fail(guard, 5)
    remaining = (locked.locked_until - datetime.now(timezone.utc)).total_seconds()
    assert 25 < remaining <= 30


@pytest.mark.parametrize("trivial", ["0000", "1111", "99999999", "1234", "4321", "0123", "9876", "7890",
                                     "8901", "12345678", "2020"])
def test_trivial_pins_are_refused_with_the_reason(guard: PinGuard, trivial: str) -> None:
    with pytest.raises(PinError) as err:
        guard.change(trivial)
    assert trivial not in str(err.value)
    assert guard.is_default()


@pytest.mark.parametrize("fine", ["4817", "1357", "1243", "2021", "86429753", "1123"])
def test_ordinary_pins_are_accepted(guard: PinGuard, fine: str) -> None:
    assert trivial_pin_reason(fine) is None
    guard.change(fine)
    assert guard.verify(fine).ok
