"""AUTOTRADER_SCREEN_SLEEP_MIN: minutes off-hours without a touch before the screen sleeps."""

from __future__ import annotations

import pytest

from app.engine.system.settings import SettingsError, load_settings


def test_default_and_values():
    assert load_settings({}, dotenv_files=[]).screen_sleep_min == 10
    assert load_settings({"AUTOTRADER_SCREEN_SLEEP_MIN": "0"}, dotenv_files=[]).screen_sleep_min == 0
    assert load_settings({"AUTOTRADER_SCREEN_SLEEP_MIN": " 45 "}, dotenv_files=[]).screen_sleep_min == 45


@pytest.mark.parametrize("raw", ["ten", "-1", "1441", "2.5"])
def test_bad_values_name_the_setting(raw):
    with pytest.raises(SettingsError, match="AUTOTRADER_SCREEN_SLEEP_MIN"):
        load_settings({"AUTOTRADER_SCREEN_SLEEP_MIN": raw}, dotenv_files=[])
