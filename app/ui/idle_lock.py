"""Idle lock: a panel opened with the PIN goes back to the wall after a while without a touch.

Anyone passing the wall could otherwise add a card or change the PIN on a settings panel someone
left open. Every press or key anywhere in the application restarts the wait; when it runs out, the
window's ``lock`` callback closes whatever panels are open (a PIN entry in progress included).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

DEFAULT_IDLE_LOCK_S = 60
_TOUCHES = (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease, QEvent.Type.TouchBegin,
            QEvent.Type.TouchUpdate, QEvent.Type.KeyPress, QEvent.Type.Wheel)


class IdleLock(QObject):
    """Calls ``lock`` after ``delay_s`` seconds without a touch (real time; 0 never)."""

    def __init__(self, lock: Callable[[], None], *, delay_s: float, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = lock
        self._delay_ms = 0
        self._filtering = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)  # a coarse timer's remaining time jitters by 5 %
        self._timer.timeout.connect(self._expired)
        self.set_delay(delay_s)

    def set_delay(self, delay_s: float) -> None:
        """Change the wait (seconds; 0 stops the lock) and start it again."""
        self._delay_ms = max(0, round(delay_s * 1000))
        app = QApplication.instance()
        if app is not None and self._delay_ms and not self._filtering:
            app.installEventFilter(self)
            self._filtering = True
        if not self._delay_ms:
            self._timer.stop()
        self.touched()

    @property
    def delay_s(self) -> float:
        """Seconds without a touch before the panels close (0: never)."""
        return self._delay_ms / 1000

    @property
    def remaining_ms(self) -> int:
        """Milliseconds left before the lock (-1 when it is not counting)."""
        return self._timer.remainingTime() if self._timer.isActive() else -1

    def touched(self) -> None:
        """Start the wait again (a touch, or a panel just opened)."""
        if self._delay_ms:
            self._timer.start(self._delay_ms)

    def _expired(self) -> None:
        self._lock()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() in _TOUCHES:
            self.touched()
        return False
