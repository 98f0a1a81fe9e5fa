"""The project's UTC text forms: the fast formatters write exactly what strftime writes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.engine.backtest.replay import _z
from app.storage.timefmt import UTC_TEXT_FORMAT, epoch_text, from_epoch, parse_utc_text, utc_text

NEW_YORK = timezone(timedelta(hours=-5))


def test_epoch_text_is_the_strftime_text_for_whole_and_fractional_seconds() -> None:
    for seconds in (0, 59, 1_700_000_000, 1_420_070_400 + 13 * 3600 + 30 * 60, 4_102_444_799, 1_700_000_000.75):
        assert epoch_text(seconds) == datetime.fromtimestamp(seconds, timezone.utc).strftime(UTC_TEXT_FORMAT)
    assert epoch_text(1_719_927_000) == "2024-07-02T13:30:00Z"
    assert parse_utc_text(epoch_text(1_719_927_000)) == from_epoch(1_719_927_000)


def test_result_instants_are_utc_text_whatever_their_zone() -> None:
    moment = datetime(2024, 7, 2, 9, 30, 15, 999_999, tzinfo=NEW_YORK)
    assert _z(moment) == utc_text(moment) == "2024-07-02T14:30:15Z"
    assert _z(from_epoch(1_719_927_000)) == utc_text(from_epoch(1_719_927_000))
