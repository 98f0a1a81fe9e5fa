"""UTC time in the forms this project stores: epoch seconds for bars, ``YYYY-MM-DDTHH:MM:SSZ`` text elsewhere."""

from __future__ import annotations

from datetime import datetime, timezone

UTC_TEXT_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_text(moment: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC. Naive datetimes are refused."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return moment.astimezone(timezone.utc).strftime(UTC_TEXT_FORMAT)


def parse_utc_text(text: str) -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SSZ`` (or any ISO form with an offset) into an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return moment.astimezone(timezone.utc)


def to_epoch(moment: datetime) -> int:
    """Whole epoch seconds of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return int(moment.timestamp())


def from_epoch(seconds: int) -> datetime:
    """Aware UTC datetime for epoch seconds."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def epoch_text(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for epoch seconds."""
    # The ISO form up to the seconds is that text (years 1000 to 9999) in half strftime's time.
    return from_epoch(seconds).isoformat(timespec="seconds")[:19] + "Z"
