"""What the wall shows when the kiosk cannot start (a read-only or missing data folder, a damaged
system.db): the one sentence the command line prints, large enough to read from across the room,
instead of a blank screen and a traceback nobody sees."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.ui import theme

TITLE = "AutoTrader could not start"


class StartFailureScreen(QWidget):
    """A full-screen black panel with a title and the reason, word-wrapped."""

    def __init__(self, reason: str, *, windowed: bool = False, footer: str = "") -> None:
        super().__init__()
        self.windowed = windowed
        theme.install_palette()
        self.setWindowTitle(TITLE)
        self.setPalette(theme.base_palette())
        self.setAutoFillBackground(True)
        self.title = QLabel(TITLE, self)
        self.reason = QLabel(reason, self)
        self.reason.setWordWrap(True)
        self.footer = QLabel(footer, self)
        self.footer.setVisible(bool(footer))
        for label in (self.title, self.reason, self.footer):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        theme.set_text_color(self.title, theme.RED)
        theme.set_text_color(self.footer, theme.DIM)
        self._layout = layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.title)
        layout.addWidget(self.reason)
        layout.addStretch(1)
        layout.addWidget(self.footer)
        self._apply(theme.Metrics.for_size(self.size()))

    def _apply(self, metrics: theme.Metrics) -> None:
        self.title.setFont(theme.mono_font(metrics.huge_px * 2, bold=True))
        # ~40 px on the 800×480 panel: readable from 2 m (DESIGN.md, Qt facts).
        self.reason.setFont(theme.mono_font(round(metrics.huge_px * 5 / 3)))
        self.footer.setFont(theme.mono_font(metrics.large_px))
        pad = metrics.pad_px * 4
        self._layout.setContentsMargins(pad, pad, pad, pad)

    def present(self) -> None:
        """Cover the screen (set the geometry too: a bare X server has no window manager to do it)."""
        screen = self.screen()
        if self.windowed or screen is None:
            self.resize(1024, 600)
            self.show()
            return
        self.setGeometry(screen.geometry())
        self.setCursor(Qt.CursorShape.BlankCursor)
        self.showFullScreen()

    def resizeEvent(self, event) -> None:  # noqa: N802
        self._apply(theme.Metrics.for_size(event.size()))
        super().resizeEvent(event)
