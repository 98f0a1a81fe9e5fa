"""Short ways to write UTC instants in engine tests."""

from __future__ import annotations

from datetime import datetime, timezone


def utc(*args: int) -> datetime:
    """An aware UTC datetime: ``utc(2024, 1, 2, 14, 30)``."""
    return datetime(*args, tzinfo=timezone.utc)


def ep(*args: int) -> int:
    """Epoch seconds of ``utc(*args)``."""
    return int(utc(*args).timestamp())
