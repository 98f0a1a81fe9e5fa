"""The window fits every supported screen: nothing past the window's edge, nothing squeezed, keys ≥ 48 px."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QFontInfo
from PySide6.QtWidgets import QAbstractScrollArea, QLabel, QPushButton, QWidget

from app.engine.plugins.loader import discover
from app.ui import theme
from app.ui.kiosk_window import KioskWindow
from app.ui.screenshot import render_png
from app.ui.widgets import ElidedLabel
from tests.ui import samples

SIZES = [QSize(800, 480), QSize(1024, 600), QSize(1280, 720), QSize(1920, 1080)]
BROKEN = Path(__file__).resolve().parents[1] / "engine" / "broken_algorithms"


def _mapped(widget: QWidget, root: QWidget) -> QRect:
    return QRect(widget.mapTo(root, QPoint(0, 0)), widget.size())


def _scroll_viewport(widget: QWidget, root: QWidget) -> QWidget | None:
    """The viewport of the scroll area ``widget`` scrolls in, if any (its content may run past by design)."""
    parent = widget.parentWidget()
    while parent is not None and parent is not root:
        area = parent.parentWidget()
        if isinstance(area, QAbstractScrollArea) and parent is area.viewport():
            return parent
        parent = area
    return None


def layout_problems(root: QWidget) -> list[str]:
    """Visible widgets outside the window, squeezed below their minimum, or cut off by a scroll area."""
    problems = []
    bounds = root.rect()
    for widget in root.findChildren(QWidget):
        if not widget.isVisibleTo(root) or widget.isWindow():
            continue
        text = widget.text() if isinstance(widget, (QLabel, QPushButton)) else ""
        name = f"{type(widget).__name__}({widget.objectName() or text!r})"
        rect = _mapped(widget, root)
        viewport = _scroll_viewport(widget, root)
        if viewport is None:
            if not bounds.contains(rect):
                problems.append(f"{name} at {rect} is outside the window {bounds}")
        else:
            port = _mapped(viewport, root)
            area = viewport.parentWidget()
            vertical_scroll = area.verticalScrollBarPolicy() != area.verticalScrollBarPolicy().ScrollBarAlwaysOff
            # The card strip scrolls sideways only: a card must fit top to bottom; forms scroll
            # vertically only: a field must fit side to side.
            if not vertical_scroll and (rect.top() < port.top() or rect.bottom() > port.bottom()):
                problems.append(f"{name} at {rect} is cut off vertically by its scroll area {port}")
            if vertical_scroll and (rect.left() < port.left() or rect.right() > port.right()):
                problems.append(f"{name} at {rect} is cut off sideways by its scroll area {port}")
        if isinstance(widget, (QPushButton, QLabel)) and not (isinstance(widget, QLabel) and widget.wordWrap()):
            hint = widget.minimumSizeHint()
            if widget.width() < hint.width() or widget.height() < hint.height():
                problems.append(f"{name} is squeezed to {widget.size()} below its minimum {hint}")
    return problems


@pytest.fixture
def kiosk(qtbot, qloop):
    win = KioskWindow(None, None, None, windowed=True, cards=samples.sample_cards(),
                      market=samples.sample_market(False),
                      stream=samples.sample_stream("reconnecting", "connection reset by peer"),
                      account=samples.sample_account("live", halted=True))
    qtbot.addWidget(win)
    return win


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s.width()}x{s.height()}")
def test_main_view_fits(kiosk, tmp_path, size):
    render_png(kiosk, size, tmp_path / "main.png")
    assert kiosk.size() == size
    assert layout_problems(kiosk) == []
    # The money in the header is never elided.
    for label in (kiosk.header.pnl, kiosk.header.cash):
        assert label.width() >= label.fontMetrics().horizontalAdvance(label.text())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s.width()}x{s.height()}")
def test_overlays_fit(kiosk, tmp_path, size):
    render_png(kiosk, size, tmp_path / "a.png")
    kiosk.pin.open_overlay()
    render_png(kiosk, size, tmp_path / "pin.png")
    assert layout_problems(kiosk) == []
    kiosk.pin.hide()

    dialog = kiosk.add_dialog
    dialog.set_algorithms(discover() + discover([BROKEN]))
    dialog.select_algorithm("sma_crossover")
    dialog.open_overlay()
    dialog.type_into("ticker", "AAPL")
    render_png(kiosk, size, tmp_path / "add.png")
    assert layout_problems(kiosk) == []
    dialog.hide()

    kiosk.open_detail(4)
    render_png(kiosk, size, tmp_path / "detail.png")
    assert layout_problems(kiosk) == []
    kiosk.detail.show_stop_choice()
    render_png(kiosk, size, tmp_path / "stop.png")
    assert layout_problems(kiosk) == []


def _small_buttons(root: QWidget) -> list[str]:
    return [f"{b.objectName() or b.text()!r} is {b.width()}x{b.height()}"
            for b in root.findChildren(QPushButton)
            if b.isVisibleTo(root) and (b.width() < theme.MIN_TOUCH_PX or b.height() < theme.MIN_TOUCH_PX)]


def test_touch_targets_at_800x480(kiosk, tmp_path):
    size = QSize(800, 480)
    render_png(kiosk, size, tmp_path / "m.png")
    assert _small_buttons(kiosk) == []
    kiosk.pin.open_overlay()
    render_png(kiosk, size, tmp_path / "p.png")
    keys = kiosk.pin.keypad.buttons
    assert len(keys) == 12
    assert _small_buttons(kiosk.pin) == []
    kiosk.pin.hide()

    dialog = kiosk.add_dialog
    dialog.set_algorithms(discover())
    dialog.select_algorithm("sma_crossover")
    dialog.open_overlay()
    for field, pad in (("ticker", dialog.letters), ("capital", dialog.numbers)):
        dialog.field(field).box.click()
        render_png(kiosk, size, tmp_path / f"{field}.png")
        assert pad.isVisible()
        assert len(pad.buttons) >= 12
        assert _small_buttons(dialog) == []


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s.width()}x{s.height()}")
def test_an_underscore_is_drawn_at_every_text_size(qtbot, size):
    """A card's machine name (``TSLA_sma_crossover_…``) read ``TSLA sma crossover …`` in the detail view at
    1024×600: at 14 px the underscore lies one pixel below the font's descent, outside a line that tall."""
    metrics = theme.Metrics.for_size(size)
    root = QWidget()
    qtbot.addWidget(root)
    root.setStyleSheet(theme.stylesheet(metrics))
    labels = [ElidedLabel("_", root, size=role) for role in (None, "small", "large", "huge", "figure", "glance")]
    labels.append(ElidedLabel("_ _", root, size="small", lines=2))
    for label in labels:
        label.ensurePolished()
        label.resize(label.sizeHint())
    for label in labels:
        image = label.grab().toImage()
        background = image.pixelColor(0, 0)  # the top row lies above an underscore at every size
        ink = [(x, y) for y in range(image.height()) for x in range(image.width())
               if image.pixelColor(x, y) != background]
        assert ink, f"no underscore at {QFontInfo(label.font()).pixelSize()} px ({label.property('textSize')})"
