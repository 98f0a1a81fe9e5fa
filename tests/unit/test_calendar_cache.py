"""The XNYS schedule cache file: the same calendar as exchange_calendars builds, rebuilt when damaged."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from app.engine.marketdata import calendar as calendar_module
from app.engine.marketdata import calendar_cache
from app.engine.marketdata.calendar import CALENDAR_NAME, CALENDAR_START, CALENDAR_YEARS_AHEAD, MarketCalendar


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """An empty cache folder; the process-wide tables are rebuilt from it, and again afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calendar_module._tables.cache_clear()
    yield tmp_path / "cache" / "autotrader"
    calendar_module._tables.cache_clear()


def _expected_file() -> str:
    last_day = date.today() + timedelta(days=365 * CALENDAR_YEARS_AHEAD)
    return calendar_cache.cache_file(CALENDAR_NAME, CALENDAR_START, last_day).name


def test_the_cached_schedule_is_the_one_exchange_calendars_builds(cache_home):
    built = MarketCalendar()  # no file yet: built with exchange_calendars, then written
    (written,) = cache_home.glob("calendar-*.json")
    assert written.name == _expected_file()
    calendar_module._tables.cache_clear()
    loaded = MarketCalendar()
    assert loaded._t is not built._t
    assert loaded._t == built._t
    assert calendar_module._build_schedule(built.last_day) == (built._t.sessions, built._t.opens, built._t.closes)
    # What the cache says is what the calendar answers: the 2024 Black Friday early close, 210 bars.
    assert loaded.minute_count(date(2024, 11, 29)) == 210 and not loaded.is_session(date(2024, 7, 4))


def test_a_damaged_or_inconsistent_file_is_rebuilt(cache_home):
    truth = MarketCalendar()._t
    path = cache_home / _expected_file()
    raw = json.loads(path.read_text())
    for damage in ("{not json", json.dumps({**raw, "opens": raw["opens"][:-1]}),
                   json.dumps({**raw, "sessions": raw["sessions"][::-1]}), json.dumps({"opens": []})):
        path.write_text(damage)
        calendar_module._tables.cache_clear()
        assert MarketCalendar()._t == truth
        assert json.loads(path.read_text()) == raw, "the rebuilt schedule is written back"


def test_older_schedules_are_removed(cache_home):
    cache_home.mkdir(parents=True)
    stale = cache_home / "calendar-XNYS-2015-01-01-2020-01-01-xc0-v1.json"
    stale.write_text("{}")
    MarketCalendar()
    assert [p.name for p in cache_home.iterdir()] == [_expected_file()]


def test_a_folder_that_cannot_be_written_only_means_no_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the cache folder would be inside a file: even root cannot create it
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    calendar_module._tables.cache_clear()
    try:
        assert MarketCalendar().minute_count(date(2024, 1, 2)) == 390
        assert blocker.read_text() == ""
    finally:
        calendar_module._tables.cache_clear()


def test_the_library_version_in_the_file_name_is_the_installed_one():
    from importlib import metadata

    assert calendar_cache.library_version("exchange_calendars") == metadata.version("exchange_calendars")
    assert calendar_cache.library_version("pytest") == metadata.version("pytest")
    assert calendar_cache.library_version("no_such_package_here") == "unknown"
