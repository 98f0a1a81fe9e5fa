"""Header: mode badge (LIVE in red), market and feed lines, P&L, cash, halt state."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QColor

from app.engine.events import AccountSummary, MarketStatus, StreamStatus
from app.ui import theme
from app.ui.header import market_text, stream_text
from app.ui.kiosk_window import KioskWindow
from app.ui.screenshot import render_png
from tests.ui import samples


def _share_of(image, color: QColor) -> float:
    hits = sum(image.pixelColor(x, y) == color for x in range(image.width()) for y in range(image.height()))
    return hits / (image.width() * image.height())


@pytest.mark.parametrize(("mode", "text", "red"), [("sim", "SIM", False), ("paper", "PAPER", False),
                                                   ("live", "LIVE", True)])
def test_mode_badge(qtbot, qloop, tmp_path, mode, text, red):
    win = KioskWindow(None, None, None, windowed=True, account=samples.sample_account(mode))
    qtbot.addWidget(win)
    render_png(win, QSize(800, 480), tmp_path / "w.png")
    assert win.header.mode_text == text
    share = _share_of(win.header.badge.grab().toImage(), theme.RED)
    # LIVE is a filled red block; the other badges have no red at all.
    assert (share > 0.5) if red else (share == 0), share


def test_market_text_in_local_time():
    now = datetime(2025, 3, 14, 15, 0, tzinfo=timezone.utc)
    close = datetime(2025, 3, 14, 20, 0, tzinfo=timezone.utc)
    opens = datetime(2025, 3, 17, 13, 30, tzinfo=timezone.utc)
    local_close = close.astimezone().strftime("%H:%M")
    assert market_text(MarketStatus(True, now, opens, close)) == f"OPEN until {local_close}"
    assert market_text(MarketStatus(False, now, opens, close)) == \
        f"CLOSED · opens {opens.astimezone().strftime('%a %H:%M')}"


def test_stream_states():
    assert stream_text(StreamStatus("live")) == ("FEED ok", theme.GREEN)
    assert stream_text(StreamStatus("reconnecting", "timeout")) == ("FEED reconnecting", theme.AMBER)
    assert stream_text(StreamStatus("failed", "406 connection limit exceeded")) == ("FEED failed", theme.RED)
    assert stream_text(StreamStatus("live", simulated=True))[0] == "SIM FEED ok"
    assert stream_text(StreamStatus("limited", "405 symbol limit exceeded")) == ("FEED limited", theme.AMBER)


def test_feed_failure_reason_reaches_the_notice_line(window):
    window.on_stream(StreamStatus("failed", "406 connection limit exceeded"))
    assert "406 connection limit exceeded" in window.notice_bar.text
    assert window.header.stream.text() == "FEED failed"


def test_account_figures_and_halt(window, qtbot):
    header = window.header
    assert header.pnl.text() == "P&L +$143.55"
    assert header.cash.text() == "CASH $40,125.50"
    assert not window.halt_banner.isVisible()
    with qtbot.waitSignal(header.halt_requested, timeout=500):
        header.halt_button.click()
    window.on_account(AccountSummary("paper", None, Decimal("-5"), True, broker_error="HTTP 503"))
    assert window.halt_banner.isVisible()
    assert header.halt_button.text() == "RESUME"
    assert header.cash.text() == "CASH unavailable"
    assert header.pnl.text() == "P&L -$5.00"
    assert "HTTP 503" in window.notice_bar.text
    with qtbot.waitSignal(header.resume_requested, timeout=500):
        header.halt_button.click()


def test_total_pnl_colour(window):
    window.on_account(AccountSummary("paper", Decimal(1), Decimal("-0.01"), False))
    assert window.header.pnl.palette().color(window.header.pnl.foregroundRole()) == theme.RED
