"""Rendering a widget to a PNG at a given size without a screen (``QT_QPA_PLATFORM=offscreen`` works)."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QApplication, QWidget

SETTLE_S = 0.05


def render_png(widget: QWidget, size: QSize, path: str | Path) -> Path:
    """Lay ``widget`` out at ``size`` and save it as a PNG at ``path``; returns the path.

    A widget that is not on screen is shown with ``WA_DontShowOnScreen`` so its layouts and style
    sheet are applied exactly as on the wall, without a window appearing anywhere.
    """
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("render_png needs a QApplication")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.isVisible():
        widget.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        widget.show()
    widget.resize(size)
    # Layouts, polish and deferred deletes settle over a few passes.
    for _ in range(3):
        app.processEvents()
    layout = widget.layout()
    if layout is not None:
        layout.activate()
    # Pictures drawn over several loop turns on short timers (the backtest chart) finish meanwhile.
    settle_until = time.monotonic() + SETTLE_S
    while time.monotonic() < settle_until:
        app.processEvents()
        time.sleep(0.002)
    pixmap = widget.grab()
    if not pixmap.save(str(path), "PNG"):
        raise OSError(f"could not write a PNG to {path}")
    return path
