"""Settings, reached after the PIN: what a wall needs — PIN, history, restart and quit, and the facts
someone standing at it asks about (version, feed, alerts, last backup, screen sleep)."""

from __future__ import annotations

from datetime import datetime, timezone

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app.ui import theme
from app.ui.overlay import Overlay
from app.ui.widgets import ElidedLabel, button, label, local_time

CONFIRM_MS = 5_000  # how long a first tap on RESTART or QUIT waits for the second
FACTS = (("mode", "MODE"), ("version", "VERSION"), ("feed", "FEED"), ("day_trades", "DAY TRADES"),
         ("alerts", "ALERTS"), ("backup", "LAST BACKUP"), ("disk", "FREE DISK"), ("sleep", "SCREEN SLEEP"),
         ("lock", "PANELS CLOSE"))
# Facts whose sentence may need a second line on a small screen.
TWO_LINE_FACTS = frozenset({"day_trades"})


def sleep_text(seconds: float) -> str:
    """``after 10 min off-hours`` / ``never``."""
    return "never" if seconds <= 0 else f"after {round(seconds / 60)} min without a touch, market closed"


def lock_text(seconds: float) -> str:
    """``after 60 s without a touch`` / ``never``."""
    return "never" if seconds <= 0 else f"after {round(seconds)} s without a touch"


def backup_text(when: datetime | None, now: datetime | None = None) -> str:
    """``Tue 01 Dec 02:00 (9 h ago)``, or that there is none yet."""
    if when is None:
        return "none yet (the engine writes one a day)"
    now = now or datetime.now(timezone.utc)
    minutes = max(0, int((now - when).total_seconds() // 60))
    hours = minutes // 60
    ago = f"{hours // 24} d ago" if hours >= 48 else f"{hours} h ago" if hours else f"{minutes} min ago"
    return f"{local_time(when, '%a %d %b %H:%M')} ({ago})"


def disk_text(free: int | None) -> str:
    """``12.3 GB``."""
    if free is None:
        return "unknown"
    return f"{free / 1e9:.1f} GB" if free >= 1e9 else f"{free / 1e6:.0f} MB"


class SettingsView(Overlay):
    """Actions and facts; emits what the user asked for, the window runs it."""

    change_pin_requested = Signal()
    history_requested = Signal()
    restart_requested = Signal()
    quit_requested = Signal()

    def __init__(self, parent: QWidget, metrics: theme.Metrics, mode: str) -> None:
        super().__init__(parent, metrics)
        self.setObjectName("settingsView")
        self.title = label("SETTINGS", size="large")
        self.message = label("", wrap=True)
        self.facts: dict[str, ElidedLabel] = {}
        grid = QGridLayout()
        grid.setVerticalSpacing(2)
        grid.setHorizontalSpacing(12)
        for row, (key, caption) in enumerate(FACTS):
            cap = ElidedLabel(caption, size="small")
            cap.set_color(theme.DIM)
            cap.setSizePolicy(cap.sizePolicy().Policy.Minimum, cap.sizePolicy().Policy.Fixed)
            value = ElidedLabel("…", lines=2 if key in TWO_LINE_FACTS else 1)
            grid.addWidget(cap, row, 0)
            grid.addWidget(value, row, 1)
            self.facts[key] = value
        grid.setColumnStretch(1, 1)
        self.facts["mode"].setText(mode.upper())

        self.change_pin_button = button("CHANGE PIN")
        self.change_pin_button.setObjectName("settingsChangePin")
        self.change_pin_button.clicked.connect(self.change_pin_requested)
        self.history_button = button("HISTORY")
        self.history_button.setObjectName("settingsHistory")
        self.history_button.clicked.connect(self.history_requested)
        # Restart and quit take a second tap: a palm against the panel must not end the kiosk.
        self.restart_button = button("RESTART")
        self.restart_button.setObjectName("settingsRestart")
        self.restart_button.clicked.connect(lambda: self._confirm(self.restart_button, "RESTART",
                                                                  self.restart_requested))
        self.quit_button = button("QUIT", kind="danger")
        self.quit_button.setObjectName("settingsQuit")
        self.quit_button.clicked.connect(lambda: self._confirm(self.quit_button, "QUIT", self.quit_requested))
        self._armed: QPushButton | None = None
        self._disarm_timer = QTimer(self)
        self._disarm_timer.setSingleShot(True)
        self._disarm_timer.timeout.connect(self._disarm)
        self.close_button = button("CLOSE")
        self.close_button.setObjectName("settingsClose")
        self.close_button.clicked.connect(self.close_overlay)

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.close_button)
        actions = QVBoxLayout()
        for b in (self.history_button, self.change_pin_button, self.restart_button, self.quit_button):
            actions.addWidget(b)
        actions.addStretch(1)
        cols = QHBoxLayout()
        left = QVBoxLayout()
        left.addLayout(grid)
        left.addWidget(self.message)
        left.addStretch(1)
        cols.addLayout(left, 1)
        cols.addLayout(actions)
        self.body_layout = layout = QVBoxLayout(self.body)
        layout.addLayout(top)
        layout.addLayout(cols, 1)
        self.apply_metrics(metrics)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Margins and button widths for a new window size."""
        super().apply_metrics(metrics)
        self.body_layout.setContentsMargins(metrics.pad_px * 2, metrics.pad_px, metrics.pad_px * 2, metrics.pad_px)
        for b in (self.change_pin_button, self.history_button, self.restart_button, self.quit_button):
            b.setMinimumWidth(metrics.touch_px * 4)

    def _confirm(self, which: QPushButton, word: str, signal) -> None:
        if self._armed is which:
            self._disarm()
            signal.emit()
            return
        self._disarm()
        self._armed = which
        which.setText(f"{word}? TAP AGAIN")
        self._disarm_timer.start(CONFIRM_MS)

    def _disarm(self) -> None:
        self._disarm_timer.stop()
        self._armed = None
        self.restart_button.setText("RESTART")
        self.quit_button.setText("QUIT")

    def close_overlay(self) -> None:
        """Hide (an armed RESTART or QUIT forgets its first tap)."""
        self._disarm()
        super().close_overlay()

    def set_message(self, text: str) -> None:
        """A result line under the facts (e.g. "PIN changed.")."""
        self.message.setText(text)

    def set_fact(self, key: str, text: str, color=None) -> None:
        """One line of the facts table (``feed``, ``alerts``, ``backup`` …)."""
        self.facts[key].setText(text)
        self.facts[key].set_color(color or theme.WHITE)

    def set_info(self, info) -> None:
        """The engine's WallInfo: version, last backup, free disk, alerts, day trades."""
        self.set_fact("version", info.version)
        self.set_fact("mode", info.mode.upper())
        self.set_fact("backup", backup_text(info.last_backup), theme.WHITE if info.last_backup else theme.AMBER)
        self.set_fact("disk", disk_text(info.free_disk_bytes))
        self.set_fact("alerts", info.alerts, theme.DIM if info.alerts.startswith("off") else theme.WHITE)
        self.set_fact("day_trades", info.day_trades)

    def fact(self, key: str) -> str:
        """The text of one fact line."""
        return self.facts[key].text()
