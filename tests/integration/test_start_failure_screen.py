"""The screen a kiosk shows when it cannot start: the reason, readable from across the room."""

from __future__ import annotations

from PySide6.QtCore import QSize

from app.ui.screenshot import render_png
from app.ui.start_failure import TITLE, StartFailureScreen

REASON = "cannot use the data folder /data/sim: it is on a read-only file system — make it writable"


def test_the_start_failure_screen_shows_the_reason_large_and_wrapped(qtbot, tmp_path):
    screen = StartFailureScreen(REASON, windowed=True, footer="AutoTrader tries again in 5 minutes.")
    qtbot.addWidget(screen)
    render_png(screen, QSize(800, 480), tmp_path / "failure.png")
    assert (tmp_path / "failure.png").stat().st_size > 0
    assert screen.title.text() == TITLE and screen.reason.text() == REASON
    assert screen.footer.isVisibleTo(screen) and "tries again" in screen.footer.text()
    assert screen.reason.wordWrap() and screen.reason.isVisibleTo(screen)
    assert screen.reason.font().pixelSize() >= 40  # read from 2 m on the 7" panel (DESIGN: ~40 px)
    assert screen.reason.width() <= 800  # wrapped inside the panel, not cut off
