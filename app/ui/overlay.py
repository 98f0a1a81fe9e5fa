"""Full-window panels drawn inside the kiosk window (PIN, add, detail, settings).

They are children of the window rather than separate dialogs: nothing can open off-screen or behind
the kiosk, and no nested ``exec()`` event loop fights with the asyncio loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from PySide6.QtCore import QEvent, QObject, QRect, Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from app.ui import theme


class Overlay(QWidget):
    """Covers its parent completely while open; subclasses put their content in ``self.body``."""

    def __init__(self, parent: QWidget, metrics: theme.Metrics) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.setAutoFillBackground(True)
        self._metrics = metrics
        self._result: asyncio.Future | None = None
        self.body = QWidget(self)
        self.body.setObjectName("overlayPanel")
        self.body.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        outer = QVBoxLayout(self)
        self._outer = outer
        outer.addWidget(self.body)
        parent.installEventFilter(self)
        self.hide()
        self._apply_outer(metrics)

    @property
    def metrics(self) -> theme.Metrics:
        """Current sizes."""
        return self._metrics

    def _apply_outer(self, metrics: theme.Metrics) -> None:
        pad = metrics.pad_px // 2
        self._outer.setContentsMargins(pad, pad, pad, pad)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Subclasses extend this to resize their content."""
        self._metrics = metrics
        self._apply_outer(metrics)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if watched is self.parent() and event.type() == QEvent.Type.Resize and self.isVisible():
            self.setGeometry(self._parent_rect())
        return False

    def _parent_rect(self) -> QRect:
        parent = self.parentWidget()
        return parent.rect() if parent is not None else self.rect()

    @property
    def is_open(self) -> bool:
        """True while shown."""
        return self.isVisible()

    def open_overlay(self) -> None:
        """Show on top of everything, filling the window."""
        self.setGeometry(self._parent_rect())
        self.show()
        self.raise_()

    def close_overlay(self) -> None:
        """Hide and settle any pending result with None (cancel)."""
        self.hide()
        self.settle(None)

    def new_result(self) -> asyncio.Future:
        """A fresh future that ``settle`` resolves (one interaction at a time)."""
        self.settle(None)
        self._result = asyncio.get_event_loop().create_future()
        return self._result

    def settle(self, value: Any) -> None:
        """Resolve the pending future, if any, with ``value``."""
        future, self._result = self._result, None
        if future is not None and not future.done():
            future.set_result(value)
