"""The PIN keypad: required before add, stop, halt/resume and settings.

Digits are kept only in this widget's memory until submitted, shown as dots, never logged. A wrong PIN
shakes the dots; a lockout disables the keys and counts down. While the PIN is still the factory
default, the first accepted entry asks for a new one (twice).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from PySide6.QtCore import QEasingCurve, QSize, Qt, QTimer, QVariantAnimation
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from app.ui import theme
from app.ui.keypads import OK, PIN_KEYS, Keypad, edit_text
from app.ui.overlay import Overlay
from app.ui.tasks import error_text
from app.ui.widgets import button, label

MAX_PIN_LEN = 8
MIN_PIN_LEN = 4
DOT, EMPTY = "●", "○"


class PinDots(QWidget):
    """Filled dots for the digits typed so far (at least four places); can shake."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._count = 0
        self._offset = 0.0
        self.setProperty("textSize", "huge")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._shake = QVariantAnimation(self)
        self._shake.setDuration(360)
        self._shake.setStartValue(0.0)
        self._shake.setEndValue(0.0)
        for step, value in enumerate((-1, 1, -1, 1, -0.5, 0.5), 1):
            self._shake.setKeyValueAt(step / 7, float(value))
        self._shake.setEasingCurve(QEasingCurve.Type.Linear)
        self._shake.valueChanged.connect(self._moved)

    def set_count(self, count: int) -> None:
        """Show ``count`` filled dots."""
        if count != self._count:
            self._count = count
            self.update()

    def text(self) -> str:
        """What is on screen, as text: never the digits themselves."""
        return DOT * self._count + EMPTY * max(0, MIN_PIN_LEN - self._count)

    def shake(self) -> None:
        """A short side-to-side shake (wrong PIN)."""
        self._shake.stop()
        self._shake.start()

    @property
    def shaking(self) -> bool:
        """True while the shake animation runs."""
        return self._shake.state() == QVariantAnimation.State.Running

    def _moved(self, value: Any) -> None:
        self._offset = float(value) * self.fontMetrics().height() * 0.4
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(self.fontMetrics().horizontalAdvance(" ".join(DOT * MAX_PIN_LEN)),
                     int(self.fontMetrics().height() * 1.4))

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setPen(theme.WHITE)
        rect = self.rect().translated(int(self._offset), 0)
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), " ".join(self.text()))


class PinDialog(Overlay):
    """Asks for the PIN and checks it with the engine.

    ``verify`` and ``change`` are async callables (the window passes
    ``lambda pin: client.call(service.verify_pin, pin)`` and the same for ``change_pin``), so the
    dialog never touches the engine thread itself.
    """

    def __init__(self, parent: QWidget, metrics: theme.Metrics, *,
                 verify: Callable[[str], Any], change: Callable[[str], Any]) -> None:
        super().__init__(parent, metrics)
        self.setObjectName("pinDialog")
        self._verify = verify
        self._change = change
        self._digits = ""
        self._locked_until: datetime | None = None
        self._lock_timer = QTimer(self)
        self._lock_timer.timeout.connect(self._lock_tick)

        self.title = label("Enter PIN", size="large")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title.setWordWrap(True)
        self.dots = PinDots()
        self.message = label("", wrap=True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setMinimumHeight(self.message.fontMetrics().height() * 2)
        self.keypad = Keypad(PIN_KEYS)
        self.keypad.key.connect(self._key)
        self.cancel_button = button("CANCEL")
        self.cancel_button.setObjectName("pinCancel")
        self.cancel_button.clicked.connect(self.cancel)

        left = QVBoxLayout()
        left.addStretch(1)
        left.addWidget(self.title)
        left.addWidget(self.dots)
        left.addWidget(self.message)
        left.addStretch(1)
        left.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.body_layout = layout = QHBoxLayout(self.body)
        layout.addLayout(left, 1)
        layout.addWidget(self.keypad, 1)
        self.apply_metrics(metrics)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Keys stay at least a touch target; the keypad never grows wider than it is useful."""
        super().apply_metrics(metrics)
        self.keypad.apply_metrics(metrics)
        self.keypad.setMaximumWidth(int(metrics.touch_px * 2.2 * 3))
        self.cancel_button.setMinimumWidth(metrics.touch_px * 3)
        self.body_layout.setContentsMargins(metrics.pad_px * 2, metrics.pad_px, metrics.pad_px * 2, metrics.pad_px)

    # -- entry -----------------------------------------------------------------------------------

    @property
    def masked_text(self) -> str:
        """The dots on screen."""
        return self.dots.text()

    @property
    def entered_length(self) -> int:
        """How many digits are typed (never the digits)."""
        return len(self._digits)

    def _key(self, key: str) -> None:
        if key == OK:
            if self._digits:
                digits, self._digits = self._digits, ""
                self.dots.set_count(0)
                self.settle(digits)
            return
        self._digits = edit_text(self._digits, key, max_len=MAX_PIN_LEN)
        self.dots.set_count(len(self._digits))

    def press(self, key: str) -> None:
        """Press a key as a finger would ("0"–"9", ``BACK``, ``OK``)."""
        self.keypad.buttons[key].click()

    def cancel(self) -> None:
        """Abandon the current request."""
        self._digits = ""
        self.dots.set_count(0)
        self.settle(None)

    async def _read(self, title: str, message: str, *, error: bool = False) -> str | None:
        self.title.setText(title)
        self._show_message(message, error=error)
        self._digits = ""
        self.dots.set_count(0)
        if not self._lock_timer.isActive():
            self.keypad.set_keys_enabled(True)
        return await self.new_result()

    def _show_message(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        theme.set_text_color(self.message, theme.RED if error else theme.DIM)

    # -- flows -----------------------------------------------------------------------------------

    async def authorise(self, purpose: str) -> bool:
        """Ask for the PIN to ``purpose`` (e.g. "halt trading"); True once the engine accepted it.

        Stays open through wrong tries and lockouts until the PIN is accepted or the user cancels.
        """
        self.open_overlay()
        try:
            message, error = "", False
            title = f"PIN to {purpose}"
            while True:
                if self._lock_timer.isActive():
                    message, error = self._lock_message(), True
                pin = await self._read(title, message, error=error)
                if pin is None:
                    return False
                self.keypad.set_keys_enabled(False)
                self._show_message("Checking…")
                try:
                    result = await self._verify(pin)
                except Exception as exc:  # noqa: BLE001 - shown, and the user may retry
                    message, error = error_text(exc), True
                    continue
                finally:
                    del pin
                if result.ok:
                    if result.is_default:
                        await self.choose_new_pin(first_time=True)
                    return True
                message, error = result.message, True
                self.dots.shake()
                if result.locked_until is not None:
                    self._start_lockout(result.locked_until)
        finally:
            self.keypad.set_keys_enabled(not self._lock_timer.isActive())
            self.hide()
            self.settle(None)

    async def choose_new_pin(self, *, first_time: bool = False) -> bool:
        """Ask for a new PIN twice and store it; False if the user gave up. Assumes the PIN was verified."""
        was_open = self.isVisible()
        self.open_overlay()
        message = ("The PIN is still the factory default. Choose a new PIN (4–8 digits)." if first_time
                   else "Choose a new PIN (4–8 digits).")
        error = False
        self.cancel_button.setText("LATER" if first_time else "CANCEL")
        try:
            while True:
                first = await self._read("New PIN", message, error=error)
                if first is None:
                    return False
                if not MIN_PIN_LEN <= len(first) <= MAX_PIN_LEN:
                    message, error = "The PIN must be 4 to 8 digits.", True
                    self.dots.shake()
                    continue
                second = await self._read("Repeat the new PIN", "Enter the same PIN again.")
                if second is None:
                    return False
                if second != first:
                    message, error = "The two PINs were different. Start again.", True
                    self.dots.shake()
                    continue
                self.keypad.set_keys_enabled(False)
                self._show_message("Saving…")
                try:
                    await self._change(first)
                except Exception as exc:  # noqa: BLE001
                    message, error = error_text(exc), True
                    continue
                self._show_message("PIN changed.")
                return True
        finally:
            self.cancel_button.setText("CANCEL")
            self.keypad.set_keys_enabled(not self._lock_timer.isActive())
            if not was_open:
                self.hide()
                self.settle(None)

    # -- lockout ---------------------------------------------------------------------------------

    def _start_lockout(self, until: datetime) -> None:
        remaining = (until - datetime.now(timezone.utc)).total_seconds()
        if not 0 < remaining <= 86_400:
            return  # the engine's clock is not the wall's (sim): it enforces the lock itself
        self._locked_until = until
        self.keypad.set_keys_enabled(False)
        self._lock_timer.start(1000)
        self._show_message(self._lock_message(), error=True)

    @property
    def locked(self) -> bool:
        """True while a lockout counts down (keys disabled)."""
        return self._lock_timer.isActive()

    def _lock_message(self) -> str:
        if self._locked_until is None:
            return ""
        seconds = max(0, int((self._locked_until - datetime.now(timezone.utc)).total_seconds() + 0.999))
        wait = f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
        return f"Too many wrong tries. Locked: try again in {wait}."

    def _lock_tick(self) -> None:
        if self._locked_until is None or datetime.now(timezone.utc) >= self._locked_until:
            self._lock_timer.stop()
            self._locked_until = None
            self.keypad.set_keys_enabled(True)
            self._show_message("You can try again now.")
            return
        self._show_message(self._lock_message(), error=True)
