"""Header: mode badge (LIVE in red), market and feed lines, P&L, cash, halt state."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QColor

from app.engine.events import AccountSummary, MarketStatus, StreamStatus
from app.ui import theme
from app.ui.header import countdown, market_text, stream_text
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


def test_market_text_names_the_next_open_or_close_in_new_york_time_with_a_countdown():
    now = datetime(2025, 3, 14, 15, 0, tzinfo=timezone.utc)  # Friday 11:00 EDT
    close = datetime(2025, 3, 14, 20, 0, tzinfo=timezone.utc)
    opens = datetime(2025, 3, 17, 13, 30, tzinfo=timezone.utc)
    assert market_text(MarketStatus(True, now, opens, close)) == "OPEN · closes 16:00 ET · in 5 h 0 min"
    evening = datetime(2025, 3, 17, 23, 58, tzinfo=timezone.utc)  # Monday 19:58 EDT
    tuesday = datetime(2025, 3, 18, 13, 30, tzinfo=timezone.utc)
    assert market_text(MarketStatus(False, evening, tuesday, tuesday)) == \
        "CLOSED · opens Tue 09:30 ET · in 13 h 32 min"
    assert market_text(MarketStatus(False, close, opens, opens)) == "CLOSED · opens Mon 09:30 ET · in 2 d 17 h"
    assert market_text(MarketStatus(False, now, opens, close), opens - timedelta(seconds=30)) == \
        "CLOSED · opens Mon 09:30 ET · in 1 min"
    assert market_text(None) == "MARKET ?"


@pytest.mark.parametrize(("seconds", "text"), [(0, "now"), (-5, "now"), (1, "in 1 min"), (3600, "in 1 h 0 min"),
                                               (52_320, "in 14 h 32 min"), (86_400 * 2 + 3600 * 3, "in 2 d 3 h")])
def test_countdown(seconds, text):
    assert countdown(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("size", [QSize(800, 480), QSize(1024, 600), QSize(1280, 720)], ids=str)
def test_night_header_shows_the_whole_next_open_and_the_date(qtbot, qloop, tmp_path, size):
    """The longest market line, a long feed state and RESUME at once: nothing of the market line is cut."""
    now = datetime(2025, 3, 17, 23, 58, tzinfo=timezone.utc)
    status = MarketStatus(False, now, datetime(2025, 3, 18, 13, 30, tzinfo=timezone.utc), now)
    win = KioskWindow(None, None, None, windowed=True, market=status, stream=StreamStatus("reconnecting"),
                      account=samples.sample_account("sim", halted=True))
    qtbot.addWidget(win)
    render_png(win, size, tmp_path / "night.png")
    header = win.header
    assert header.market.text() == "CLOSED · opens Tue 09:30 ET · in 13 h 32 min"  # the sim's own clock
    local = now.astimezone()
    assert header.date.text() == f"{local:%a} {local.day} {local:%b}"
    assert header.clock.text() == f"{local:%H:%M}"
    for label in (header.market, header.date, header.clock, header.value, header.pnl, header.cash):
        assert label.width() >= label.fontMetrics().horizontalAdvance(label.text()), label.text()
        assert label.geometry().right() < header.halt_button.geometry().left()


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
    assert header.value.text() == "$59,873"
    assert header.pnl.text() == "-$212.40"
    assert header.cash.text() == "CASH $40,126"
    assert not window.halt_banner.isVisible()
    with qtbot.waitSignal(header.halt_requested, timeout=500):
        header.halt_button.click()
    window.on_account(AccountSummary("paper", None, Decimal("-5"), True, broker_error="HTTP 503",
                                     value=None, day_pnl=Decimal("1234.5")))
    assert window.halt_banner.isVisible()
    assert header.halt_button.text() == "RESUME"
    assert header.cash.text() == "CASH unavailable"
    assert header.value.text() == "—"
    assert header.pnl.text() == "+$1,235"
    assert "HTTP 503" in window.notice_bar.text
    with qtbot.waitSignal(header.resume_requested, timeout=500):
        header.halt_button.click()


def test_day_pnl_colour(window):
    window.on_account(AccountSummary("paper", Decimal(1), Decimal("5"), False, day_pnl=Decimal("-0.01")))
    assert window.header.pnl.palette().color(window.header.pnl.foregroundRole()) == theme.RED
    window.on_account(AccountSummary("paper", Decimal(1), Decimal("-5"), False, day_pnl=Decimal("0.01")))
    assert window.header.pnl.palette().color(window.header.pnl.foregroundRole()) == theme.GREEN


def test_the_days_pnl_says_it_covers_the_running_cards(window):
    """A card stopped today is counted in ALL CARDS, not in the day's figure: its caption says so,
    on two lines that are as wide as the longer word, not as the whole phrase."""
    caption = window.header._captions[1]
    assert caption.text() == "RUNNING TODAY"
    fm = caption.fontMetrics()
    assert caption.sizeHint().width() < fm.horizontalAdvance("RUNNING TODAY")
    assert caption.sizeHint().width() >= fm.horizontalAdvance("RUNNING")
    assert caption.sizeHint().height() > fm.height()  # two lines
