"""The kiosk PIN: a salted scrypt hash in system_config, with persistent escalating lockouts.

The digits are never stored, logged or put in a message. The default PIN 2020 works until it is
changed (the UI asks for a change while :meth:`PinGuard.is_default` is true).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from app.storage.system_store import SystemStore
from app.storage.timefmt import parse_utc_text, utc_text

DEFAULT_PIN = "2020"
MAX_TRIES = 5
FIRST_LOCKOUT_S = 30
MAX_LOCKOUT_S = 86_400
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_KDF = f"scrypt:{SCRYPT_N}:{SCRYPT_R}:{SCRYPT_P}"
_PIN_FORMAT = re.compile(r"[0-9]{4,8}")
_MAX_INPUT = 64  # longer input is wrong by definition; don't feed megabytes to scrypt

K_HASH, K_SALT, K_KDF = "pin_hash", "pin_salt", "pin_kdf"
K_DEFAULT, K_FAILURES = "pin_is_default", "pin_failures"
K_LOCKOUTS, K_LOCKED_UNTIL = "pin_lockouts", "pin_locked_until"
_LEGACY_PLAINTEXT = "pin"  # the seed's plaintext row, converted to a hash on first use


class PinError(ValueError):
    """A new PIN that is not acceptable; the message says why (never repeating the digits)."""


@dataclass(frozen=True, slots=True)
class PinResult:
    """Outcome of one PIN attempt, ready for the UI to show."""

    ok: bool
    locked_until: datetime | None
    tries_left: int
    is_default: bool
    message: str


def _hash(pin: str, salt: bytes) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          dklen=32)


def _lockout_seconds(lockouts: int) -> int:
    """30 s for the first lockout, doubling each further one, capped at a day."""
    if lockouts >= 32:  # 30 * 2**31 is far past the cap; avoid huge integers
        return MAX_LOCKOUT_S
    return min(FIRST_LOCKOUT_S * 2 ** (lockouts - 1), MAX_LOCKOUT_S)


def _duration_text(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s" if seconds % 60 else f"{seconds // 60} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"


class PinGuard:
    """Checks and changes the PIN, with lockouts that survive a restart.

    After :data:`MAX_TRIES` wrong tries in a row the PIN is locked for 30 s, then 60 s, 120 s …
    (at most a day) for each further lockout; while locked every attempt is refused unchecked.
    A correct PIN resets both the failure and the lockout count.
    """

    def __init__(self, store: SystemStore,
                 now: Callable[[], datetime] | None = None) -> None:
        self._store = store
        # Lockouts are real-world waits, but the engine may pass its Clock so sim mode agrees.
        self._now = now or (lambda: datetime.now(timezone.utc))

    def __repr__(self) -> str:
        return "PinGuard()"

    # -- state --------------------------------------------------------------------------------

    def _ensure_initialised(self) -> None:
        if self._store.get_config(K_HASH) is not None:
            return
        legacy = self._store.get_config(_LEGACY_PLAINTEXT)
        pin = legacy if legacy is not None and _PIN_FORMAT.fullmatch(legacy) else DEFAULT_PIN
        self._store.set_configs({**self._hash_settings(pin), K_DEFAULT: _flag(pin == DEFAULT_PIN),
                                 K_FAILURES: "0", K_LOCKOUTS: "0", K_LOCKED_UNTIL: "",
                                 _LEGACY_PLAINTEXT: None})

    @staticmethod
    def _hash_settings(pin: str) -> dict[str, str]:
        salt = os.urandom(16)
        return {K_HASH: _hash(pin, salt).hex(), K_SALT: salt.hex(), K_KDF: _KDF}

    def _int(self, key: str) -> int:
        try:
            return max(0, int(self._store.get_config(key) or 0))
        except ValueError:
            return 0

    def _locked_until(self) -> datetime | None:
        text = self._store.get_config(K_LOCKED_UNTIL)
        if not text:
            return None
        try:
            until = parse_utc_text(text)
        except ValueError:
            # Corrupt lock state fails closed for one base lockout rather than open (or forever).
            until = self._now() + timedelta(seconds=FIRST_LOCKOUT_S)
            self._store.set_config(K_LOCKED_UNTIL, utc_text(until))
        return until if until > self._now() else None

    def is_default(self) -> bool:
        """True while the PIN is still the factory default."""
        self._ensure_initialised()
        return self._store.get_config(K_DEFAULT) == "1"

    def lock_state(self) -> datetime | None:
        """When the current lockout ends, or None if attempts are allowed now."""
        self._ensure_initialised()
        return self._locked_until()

    # -- actions ------------------------------------------------------------------------------

    def verify(self, pin: str) -> PinResult:
        """Check one attempt. Refused unchecked while locked; wrong tries count towards a lockout."""
        self._ensure_initialised()
        is_default = self.is_default()
        until = self._locked_until()
        if until is not None:
            wait = (until - self._now()).total_seconds()
            return PinResult(False, until, 0, is_default,
                             f"Too many wrong tries. Try again in {_duration_text(wait)}.")
        salt = bytes.fromhex(self._store.get_config(K_SALT) or "")
        expected = bytes.fromhex(self._store.get_config(K_HASH) or "")
        valid_input = isinstance(pin, str) and 0 < len(pin) <= _MAX_INPUT
        # Always hash, so a malformed attempt costs the same time as a real one.
        actual = _hash(pin if valid_input else "\0", salt)
        if hmac.compare_digest(actual, expected) and valid_input:
            self._store.set_configs({K_FAILURES: "0", K_LOCKOUTS: "0", K_LOCKED_UNTIL: ""})
            return PinResult(True, None, MAX_TRIES, is_default, "PIN accepted.")
        failures = self._int(K_FAILURES) + 1
        if failures < MAX_TRIES:
            self._store.set_config(K_FAILURES, str(failures))
            left = MAX_TRIES - failures
            return PinResult(False, None, left, is_default,
                             f"Wrong PIN. {left} {'try' if left == 1 else 'tries'} left.")
        lockouts = self._int(K_LOCKOUTS) + 1
        seconds = _lockout_seconds(lockouts)
        until = self._now() + timedelta(seconds=seconds)
        self._store.set_configs({K_FAILURES: "0", K_LOCKOUTS: str(lockouts),
                                 K_LOCKED_UNTIL: utc_text(until)})
        return PinResult(False, until, 0, is_default,
                         f"Wrong PIN. Locked for {_duration_text(seconds)}.")

    def change(self, new_pin: str) -> None:
        """Replace the PIN (4–8 digits, not the default); clears the default flag and failures.

        The caller must have verified the current PIN first.
        """
        if not isinstance(new_pin, str) or _PIN_FORMAT.fullmatch(new_pin) is None:
            raise PinError("The PIN must be 4 to 8 digits.")
        reason = trivial_pin_reason(new_pin)
        if reason:
            raise PinError(reason)
        self._ensure_initialised()
        self._store.set_configs({**self._hash_settings(new_pin), K_DEFAULT: "0",
                                 K_FAILURES: "0", K_LOCKOUTS: "0", K_LOCKED_UNTIL: ""})


def trivial_pin_reason(pin: str) -> str | None:
    """Why a well-formed PIN is too easy to guess (the default, one digit repeated, a run of digits up or
    down like 1234, 4321 or 7890), or None. The sentence never repeats the digits."""
    if pin == DEFAULT_PIN:
        return "Choose a PIN other than the factory default."
    if len(set(pin)) == 1:
        return "The PIN must not be one digit repeated: anyone would try that first."
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:])}
    if steps in ({1}, {9}):
        return "The PIN must not be a run of digits counting up or down: anyone would try that first."
    return None


def _flag(value: bool) -> str:
    return "1" if value else "0"
