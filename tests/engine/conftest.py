"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest

from app.engine.marketdata.calendar import MarketCalendar


@pytest.fixture(scope="module")
def cal() -> MarketCalendar:
    """The real XNYS calendar (built once per process, cheap after that)."""
    return MarketCalendar()
