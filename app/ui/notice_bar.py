"""The bottom line: the latest engine notice or action result; errors stay readable, old news fades."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QWidget

from app.engine.events import Notice
from app.ui import theme
from app.ui.widgets import ElidedLabel, local_time

KIND_COLORS = {"error": theme.RED, "fault": theme.RED, "refused": theme.AMBER, "info": theme.WHITE}
KIND_TAGS = {"error": "ERROR", "fault": "FAULT", "refused": "REFUSED", "info": ""}
FADE_AFTER_MS = 30_000


class NoticeBar(QWidget):
    """One elided line: time, kind and message of the most recent notice. Tap to clear."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.line = ElidedLabel(size="small")
        self._history: list[Notice] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.line)
        self._fade = QTimer(self)
        self._fade.setSingleShot(True)
        self._fade.timeout.connect(lambda: self.line.set_color(theme.DIM))
        self.line.set_color(theme.DIM)
        self.line.setText("Ready.")

    def show_notice(self, notice: Notice) -> None:
        """Show ``notice`` now, coloured by kind; it turns grey after a while."""
        self._history = (self._history + [notice])[-50:]
        when = local_time(notice.at or datetime.now().astimezone())
        tag = KIND_TAGS.get(notice.kind, notice.kind.upper())
        self.line.setText(f"{when}  {tag + '  ' if tag else ''}{notice.message}")
        self.line.set_color(KIND_COLORS.get(notice.kind, theme.WHITE))
        self._fade.start(FADE_AFTER_MS)

    def show_message(self, message: str, kind: str = "info") -> None:
        """Show a UI-side message (an action's result or error)."""
        self.show_notice(Notice(kind=kind, message=message))

    @property
    def text(self) -> str:
        """The line as shown (unelided)."""
        return self.line.text()

    @property
    def history(self) -> tuple[Notice, ...]:
        """The last 50 notices, oldest first."""
        return tuple(self._history)

    def mousePressEvent(self, _event) -> None:  # noqa: N802
        self.line.set_color(theme.DIM)
