"""Off-hours screen sleep (issue 14 item 5): dark after the idle delay while closed, awake on a touch
and before the open, never during the session; the platform command runs where there is one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtTest import QTest

from app.engine.events import MarketStatus
from app.ui.kiosk_window import KioskWindow
from app.ui.screen_sleep import WAKE_BEFORE_OPEN, ScreenSleep
from app.ui.screenshot import render_png
from tests.ui import samples

EVENING = datetime(2025, 3, 17, 23, 58, tzinfo=timezone.utc)
NEXT_OPEN = datetime(2025, 3, 18, 13, 30, tzinfo=timezone.utc)
DELAY = 600.0


class Clocks:
    """The wall's moment and a monotonic idle clock, both moved by hand."""

    def __init__(self) -> None:
        self.moment = EVENING
        self.seconds = 1000.0

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)
        self.seconds += seconds


def _wall(qtbot, tmp_path, clocks: Clocks, commands=None):
    win = KioskWindow(None, None, None, windowed=True, cards=samples.sample_cards(),
                      account=samples.sample_account("sim"))
    qtbot.addWidget(win)
    sleep = ScreenSleep(win, delay_s=DELAY, now=clocks.now, monotonic=clocks.monotonic, commands=commands)
    win.screen_sleep = sleep
    render_png(win, QSize(800, 480), tmp_path / "wall.png")
    return win, sleep


def test_sleeps_after_the_delay_off_hours_and_a_touch_wakes_it(qtbot, tmp_path):
    clocks = Clocks()
    win, sleep = _wall(qtbot, tmp_path, clocks)
    sleep.set_market(MarketStatus(False, EVENING, NEXT_OPEN, NEXT_OPEN))
    clocks.advance(DELAY - 1)
    sleep.check()
    assert not sleep.asleep
    clocks.advance(2)
    sleep.check()
    assert sleep.asleep and sleep.overlay.isVisible() and sleep.overlay.geometry() == win.rect()
    first = (sleep.overlay.text, sleep.overlay.offset)
    clocks.advance(60)
    sleep.check()
    assert sleep.overlay.text != first[0] and sleep.overlay.offset != first[1]  # the clock moves

    tapped = []
    win.strip.card_tapped.connect(tapped.append)
    # Through the window, as a touch arrives (the card's kinetic scroller would hold a press sent to it).
    spot = win.strip.card(1).mapTo(win, QPoint(20, 20))
    QTest.mouseClick(win.windowHandle(), Qt.MouseButton.LeftButton, pos=spot)
    assert not sleep.asleep and not sleep.overlay.isVisible()
    assert tapped == []  # the waking tap opened nothing
    clocks.advance(DELAY - 5)
    sleep.check()
    assert not sleep.asleep  # the idle time started again at the touch


def test_wakes_before_the_open_and_never_sleeps_in_session(qtbot, tmp_path):
    clocks = Clocks()
    _win, sleep = _wall(qtbot, tmp_path, clocks)
    sleep.set_market(MarketStatus(False, EVENING, NEXT_OPEN, NEXT_OPEN))
    clocks.advance(DELAY + 1)
    sleep.check()
    assert sleep.asleep
    clocks.moment = NEXT_OPEN - WAKE_BEFORE_OPEN
    sleep.check()
    assert not sleep.asleep
    clocks.advance(DELAY * 3)
    sleep.check()
    assert not sleep.asleep  # within 5 minutes of the open: stays on
    sleep.set_market(MarketStatus(True, NEXT_OPEN, NEXT_OPEN + timedelta(days=1), NEXT_OPEN + timedelta(hours=6)))
    clocks.moment = NEXT_OPEN + timedelta(hours=1)
    clocks.advance(DELAY * 10)
    sleep.check()
    assert not sleep.asleep


def test_the_platform_switches_the_panel(qtbot, tmp_path):
    """A real command per transition (here a shell appending to a file, standing in for xset/wlopm)."""
    log = tmp_path / "panel.log"
    commands = (["sh", "-c", f"echo off >> {log}"], ["sh", "-c", f"echo on >> {log}"])
    clocks = Clocks()
    _win, sleep = _wall(qtbot, tmp_path, clocks, commands)
    sleep.set_market(MarketStatus(False, EVENING, NEXT_OPEN, NEXT_OPEN))
    clocks.advance(DELAY + 1)
    sleep.check()
    sleep.wake()
    qtbot.waitUntil(lambda: log.exists() and log.read_text().split() == ["off", "on"], timeout=5000)


def test_off_by_default_and_a_zero_delay_never_sleeps(qtbot, tmp_path):
    win = KioskWindow(None, None, None, windowed=True)
    qtbot.addWidget(win)
    assert win.screen_sleep is None
    clocks = Clocks()
    _win, sleep = _wall(qtbot, tmp_path, clocks)
    sleep._delay_s = 0
    sleep.set_market(MarketStatus(False, EVENING, NEXT_OPEN, NEXT_OPEN))
    clocks.advance(86_400)
    sleep.check()
    assert not sleep.asleep
