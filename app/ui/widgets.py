"""Small building blocks shared by the kiosk views: labels that elide instead of clipping, buttons, lines."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TypeVar

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QFrame, QLabel, QPushButton, QScroller, QScrollerProperties,
                               QSizePolicy, QTableView, QTableWidget, QWidget)

from app.ui import theme

_View = TypeVar("_View", bound=QTableView)


_INK_BELOW: dict[tuple[int, int, int, int], int] = {}


def ink_below_descent(fm: QFontMetrics) -> int:
    """Pixels an underscore reaches below the font's rounded descent (1 at some sizes, e.g. 14 px
    DejaVu Sans Mono, where a line exactly ``fm.height()`` tall drew ``a_b`` as ``a b``)."""
    # Asked on every label paint: measured once per font size (a glyph bounding box is not free).
    key = (fm.height(), fm.ascent(), fm.descent(), fm.averageCharWidth())
    below = _INK_BELOW.get(key)
    if below is None:
        below = _INK_BELOW[key] = max(0, fm.tightBoundingRect("_").bottom() + 1 - fm.descent())
    return below


class ElidedLabel(QWidget):
    """One or a few lines of text that end in "…" rather than being cut off or widening the layout.

    ``set_text`` only repaints when the text changes, so updating 50 cards stays cheap. A label
    given a ``background`` paints it itself (opaque): a new text then repaints the label alone, not
    the card and the style-sheet backgrounds behind it (a 50-card update's frames went from 3.5–4.6
    to 1.1–1.2 ms of painting).
    """

    def __init__(self, text: str = "", parent: QWidget | None = None, *, size: str | None = None,
                 lines: int = 1, align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft,
                 background: QColor | None = None) -> None:
        super().__init__(parent)
        self._text = text
        self._lines = max(1, lines)
        self._align = align
        self._background = background
        if background is not None:
            self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        if size:
            self.setProperty("textSize", size)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)

    def text(self) -> str:
        """The full text (not elided)."""
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming, so it reads like QLabel
        """Show ``text``; a no-op when unchanged."""
        if text == self._text:
            return
        self._text = text
        if self.sizePolicy().horizontalPolicy() == QSizePolicy.Policy.Minimum:
            self.updateGeometry()
        self.update()

    def set_color(self, color: QColor) -> None:
        """Recolour the text (palette only)."""
        theme.set_text_color(self, color)

    def sizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        # A label of several lines is as wide as its widest word (it wraps word by word).
        words = (self._text.split() if self._lines > 1 else [self._text or " "]) or [" "]
        # +2: eliding compares sub-pixel advances, a hint exactly at the advance can elide the last glyph
        return QSize(max(fm.horizontalAdvance(w) for w in words) + 2, self._text_height(fm))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        if self.sizePolicy().horizontalPolicy() == QSizePolicy.Policy.Minimum:
            return self.sizeHint()  # a label that must never elide
        return QSize(0, self._text_height(self.fontMetrics()))

    def _text_height(self, fm: QFontMetrics) -> int:
        return fm.height() * self._lines + ink_below_descent(fm)

    def changeEvent(self, event) -> None:  # noqa: N802
        super().changeEvent(event)
        if event.type() == event.Type.FontChange:
            self.updateGeometry()

    def paintEvent(self, _event) -> None:  # noqa: N802
        if self._background is None and not self._text:
            return
        painter = QPainter(self)
        if self._background is not None:
            painter.fillRect(self.rect(), self._background)
        if not self._text:
            return
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        fm = self.fontMetrics()
        # Lines are placed as if the label were ink_below_descent shorter: that bottom row is where
        # an underscore's ink goes at the sizes where it falls below the descent.
        rect = self.contentsRect().adjusted(0, 0, 0, -ink_below_descent(fm))
        if self._lines == 1:
            painter.drawText(rect, int(self._align | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextDontClip),
                             fm.elidedText(self._text, Qt.TextElideMode.ElideRight, rect.width()))
            return
        # Wrap word by word; the last allowed line takes the rest of the text, elided.
        words = self._text.split()
        y = rect.top()
        for line_no in range(self._lines):
            if not words:
                break
            if line_no == self._lines - 1:
                line = fm.elidedText(" ".join(words), Qt.TextElideMode.ElideRight, rect.width())
                words = []
            else:
                line = words.pop(0)
                while words and fm.horizontalAdvance(f"{line} {words[0]}") <= rect.width():
                    line = f"{line} {words.pop(0)}"
                if fm.horizontalAdvance(line) > rect.width():
                    line = fm.elidedText(line, Qt.TextElideMode.ElideRight, rect.width())
            painter.drawText(QRect(rect.left(), y, rect.width(), fm.height()),
                             int(self._align | Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextDontClip), line)
            y += fm.height()


def label(text: str = "", *, size: str | None = None, dim: bool = False, wrap: bool = False,
          parent: QWidget | None = None) -> QLabel:
    """A QLabel with a style-sheet size role (``small``/``large``/``huge``); ``dim`` is grey static text."""
    widget = QLabel(text, parent)
    if size:
        widget.setProperty("textSize", size)
    if dim:
        widget.setProperty("tone", "dim")
    widget.setWordWrap(wrap)
    return widget


def button(text: str, *, kind: str | None = None, parent: QWidget | None = None) -> QPushButton:
    """A touch button (at least ``theme.MIN_TOUCH_PX`` square by style sheet); ``kind`` picks its style."""
    widget = QPushButton(text, parent)
    if kind:
        widget.setProperty("kind", kind)
    widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # no keyboard on the wall: no focus rectangles
    widget.setMinimumSize(theme.MIN_TOUCH_PX, theme.MIN_TOUCH_PX)
    return widget


def separator(*, vertical: bool = False) -> QFrame:
    """A thin 1-px grey line."""
    line = QFrame()
    line.setProperty("separator", True)
    if vertical:
        line.setFixedWidth(1)
        line.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
    else:
        line.setFixedHeight(1)
        line.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return line


def enable_kinetic_scrolling(viewport: QWidget, *, horizontal: bool) -> None:
    """Touch and mouse-drag flick scrolling on ``viewport`` that never overshoots the other axis."""
    QScroller.grabGesture(viewport, QScroller.ScrollerGestureType.LeftMouseButtonGesture)
    scroller = QScroller.scroller(viewport)
    props = scroller.scrollerProperties()
    off = QScrollerProperties.OvershootPolicy.OvershootAlwaysOff
    props.setScrollMetric(QScrollerProperties.ScrollMetric.VerticalOvershootPolicy
                          if horizontal else QScrollerProperties.ScrollMetric.HorizontalOvershootPolicy, off)
    # Deliver a tap to the card or button under the finger quickly when it turns out not to be a drag.
    props.setScrollMetric(QScrollerProperties.ScrollMetric.MousePressEventDelay, 0.12)
    scroller.setScrollerProperties(props)


def local_time(dt: datetime | None, fmt: str = "%H:%M") -> str:
    """``dt`` (aware, or naive meaning UTC) in the wall's local time, or "" for None."""
    if dt is None:
        return ""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone().strftime(fmt)


def parse_utc(text: str) -> datetime | None:
    """``YYYY-MM-DDTHH:MM:SSZ`` (the stores' text form) as an aware UTC datetime, None if unreadable."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def read_only_table(columns: tuple[str, ...] | list[str]) -> QTableWidget:
    """A touch-friendly, read-only table: no editing, selection, focus or grid; pixel scrolling."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    return read_only_view(table)


def read_only_view(table: _View) -> _View:
    """Make a table view (a model's, or a QTableWidget) touch-friendly and read-only, as
    :func:`read_only_table` is."""
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    table.setShowGrid(False)
    table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    return table
