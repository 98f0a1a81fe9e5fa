"""Settings, reached after the PIN: change the PIN; shows which mode and engine this kiosk runs."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QVBoxLayout, QWidget

from app.ui import theme
from app.ui.overlay import Overlay
from app.ui.widgets import button, label


class SettingsView(Overlay):
    """A short list of actions; emits ``change_pin_requested``. The window runs the PIN change."""

    change_pin_requested = Signal()

    def __init__(self, parent: QWidget, metrics: theme.Metrics, mode: str) -> None:
        super().__init__(parent, metrics)
        self.setObjectName("settingsView")
        self.title = label("SETTINGS", size="large")
        self.info = label(f"Mode: {mode.upper()}", dim=True, wrap=True)
        self.message = label("", wrap=True)
        self.change_pin_button = button("CHANGE PIN")
        self.change_pin_button.setObjectName("settingsChangePin")
        self.change_pin_button.clicked.connect(self.change_pin_requested)
        self.close_button = button("CLOSE")
        self.close_button.setObjectName("settingsClose")
        self.close_button.clicked.connect(self.close_overlay)

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.close_button)
        self.body_layout = layout = QVBoxLayout(self.body)
        layout.addLayout(top)
        layout.addWidget(self.info)
        layout.addWidget(self.change_pin_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self.apply_metrics(metrics)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Margins and button widths for a new window size."""
        super().apply_metrics(metrics)
        self.body_layout.setContentsMargins(metrics.pad_px * 2, metrics.pad_px, metrics.pad_px * 2, metrics.pad_px)
        self.change_pin_button.setMinimumWidth(metrics.touch_px * 4)

    def set_message(self, text: str) -> None:
        """A result line under the actions (e.g. "PIN changed.")."""
        self.message.setText(text)
