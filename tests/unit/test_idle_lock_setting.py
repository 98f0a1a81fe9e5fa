"""AUTOTRADER_IDLE_LOCK_S: seconds without a touch before a PIN-opened panel closes back to the wall."""

from __future__ import annotations

import pytest

from app.engine.system.settings import SettingsError, load_settings


def test_default_and_values():
    assert load_settings({}, dotenv_files=[]).idle_lock_s == 60
    assert load_settings({"AUTOTRADER_IDLE_LOCK_S": "0"}, dotenv_files=[]).idle_lock_s == 0
    assert load_settings({"AUTOTRADER_IDLE_LOCK_S": " 120 "}, dotenv_files=[]).idle_lock_s == 120


@pytest.mark.parametrize("raw", ["soon", "-1", "5", "3601", "1.5"])
def test_bad_values_name_the_setting(raw):
    with pytest.raises(SettingsError, match="AUTOTRADER_IDLE_LOCK_S"):
        load_settings({"AUTOTRADER_IDLE_LOCK_S": raw}, dotenv_files=[])
