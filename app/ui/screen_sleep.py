"""Off-hours screen sleep: the wall goes dark while the market is closed and nobody touches it.

After ``delay_s`` without a touch, outside market hours and not within :data:`WAKE_BEFORE_OPEN` of
the next open, the panel is switched off through the platform where it can be (``xset dpms force
off`` on X, ``wlopm --off '*'`` on wlroots compositors such as labwc and wayfire) and a black
overlay with a small dim clock covers the kiosk in any case: where the panel cannot be switched off
it is what shows (the clock moves a few pixels every minute against burn-in), and where it can, the
tap that wakes the panel lands on the overlay instead of on a button. A touch wakes it, and so does
the approach of the open.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QPainter
from PySide6.QtWidgets import QApplication, QWidget

from app.engine.events import MarketStatus
from app.ui import theme

WAKE_BEFORE_OPEN = timedelta(minutes=5)
CHECK_INTERVAL_MS = 5_000
_PRESSES = (QEvent.Type.MouseButtonPress, QEvent.Type.TouchBegin, QEvent.Type.KeyPress)
_DRIFT_PX = 24  # how far the night clock wanders from its place


def platform_commands(platform: str | None = None) -> tuple[list[str], list[str]] | None:
    """The (off, on) commands that switch the panel on this platform, or None (overlay only)."""
    platform = platform or QGuiApplication.platformName()
    if platform == "xcb" and shutil.which("xset"):
        return ["xset", "dpms", "force", "off"], ["xset", "dpms", "force", "on"]
    if platform.startswith("wayland") and shutil.which("wlopm"):
        return ["wlopm", "--off", "*"], ["wlopm", "--on", "*"]
    return None


class NightOverlay(QWidget):
    """Black, with the time small and dim, drifting a little each minute."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("nightOverlay")
        self.text = ""
        self.offset = (0, 0)
        self.hide()

    def show_time(self, now: datetime) -> None:
        """Draw ``now`` (HH:MM), placed by its minute so it never burns in at one spot."""
        local = now.astimezone()
        minute = local.hour * 60 + local.minute
        self.text = f"{local:%H:%M}"
        self.offset = ((minute * 7) % (2 * _DRIFT_PX) - _DRIFT_PX, (minute * 11) % (2 * _DRIFT_PX) - _DRIFT_PX)
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), theme.BLACK)
        painter.setPen(theme.GREY)
        painter.setFont(theme.mono_font(max(12, self.height() // 24)))
        painter.drawText(self.rect().translated(*self.offset), int(Qt.AlignmentFlag.AlignCenter), self.text)


class ScreenSleep(QObject):
    """Decides when the wall sleeps and wakes; ``check`` runs every few seconds and on market changes.

    ``now`` is the wall's moment (the simulated market's in SIM); idle time is real time
    (``monotonic``), so a fast simulation does not blank the screen in seconds.
    """

    def __init__(self, window: QWidget, *, delay_s: float, now: Callable[[], datetime],
                 commands: tuple[Sequence[str], Sequence[str]] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, parent: QObject | None = None) -> None:
        super().__init__(parent or window)
        self._window = window
        self._delay_s = delay_s
        self._now = now
        self._monotonic = monotonic
        self._commands = commands
        self._market: MarketStatus | None = None
        self._last_touch = monotonic()
        self._asleep = False
        self._child: subprocess.Popen | None = None
        self._pending: list[list[str]] = []
        self.overlay = NightOverlay(window)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(CHECK_INTERVAL_MS)

    @property
    def asleep(self) -> bool:
        """True while the screen is off (or black)."""
        return self._asleep

    def set_market(self, status: MarketStatus | None) -> None:
        """The engine's market status: sleep is only for the closed market."""
        self._market = status
        self.check()

    def may_sleep(self, now: datetime) -> bool:
        """Closed, and the next open more than :data:`WAKE_BEFORE_OPEN` away."""
        status = self._market
        return status is not None and not status.is_open and status.next_open - now > WAKE_BEFORE_OPEN

    def check(self) -> None:
        """Sleep after the idle delay off-hours; wake when the open approaches."""
        now = self._now()
        if self._asleep:
            if not self.may_sleep(now):
                self.wake()
            else:
                self.overlay.show_time(now)
            return
        if self._delay_s > 0 and self.may_sleep(now) and self._monotonic() - self._last_touch >= self._delay_s:
            self.sleep()

    def sleep(self) -> None:
        """Switch the panel off (where the platform can) behind a black overlay."""
        self._asleep = True
        self.overlay.setGeometry(self._window.rect())
        self.overlay.show_time(self._now())
        self.overlay.show()
        self.overlay.raise_()
        if self._commands:
            self._run(self._commands[0])

    def wake(self) -> None:
        """Panel on, overlay gone, idle time starts again."""
        self._asleep = False
        self._last_touch = self._monotonic()
        self.overlay.hide()
        if self._commands:
            self._run(self._commands[1])

    def _run(self, command: Sequence[str]) -> None:
        # In order (off must not overtake on) and never waiting on the UI thread: one at a time, the
        # next started when the last has finished.
        self._pending.append(list(command))
        self._start_next()

    def _start_next(self) -> None:
        if self._child is not None and self._child.poll() is None:
            QTimer.singleShot(50, self._start_next)
            return
        self._child = None
        if not self._pending:
            return
        try:
            self._child = subprocess.Popen(self._pending.pop(0), stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        except OSError:
            self._commands = None  # the overlay alone from now on
            self._pending.clear()
            return
        if self._pending:
            QTimer.singleShot(50, self._start_next)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() in _PRESSES:
            if self._asleep:
                self.wake()
                return True  # the waking tap does nothing else
            self._last_touch = self._monotonic()
        return False
