"""The session price line on a card, with buy (green ▲) and sell (red ▼) markers at their fills."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPointF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.engine.events import TradeMarker
from app.ui import theme

LINE = QColor("#e5e7eb")
BASELINE = QColor("#374151")


class Sparkline(QWidget):
    """Draws closes scaled to its box. The path is rebuilt only when data or size change, not per paint."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: tuple[float, ...] = ()
        self._start: int | None = None
        self._markers: tuple[TradeMarker, ...] = ()
        self._path: QPainterPath | None = None
        self._marks: list[tuple[QPolygonF, QColor]] = []
        self._baseline_y: float | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(24)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(120, 60)

    @property
    def point_count(self) -> int:
        """How many closes are drawn."""
        return len(self._values)

    @property
    def marker_count(self) -> int:
        """How many trade markers fall inside the line and are drawn."""
        if self._path is None:
            self._rebuild()
        return len(self._marks)

    def set_data(self, values: Sequence[float], start: int | None,
                 markers: Sequence[TradeMarker] = ()) -> None:
        """Show ``values`` (one close per minute from epoch ``start``) and the fills in ``markers``."""
        values = tuple(values)
        markers = tuple(markers)
        if values == self._values and start == self._start and markers == self._markers:
            return
        self._values, self._start, self._markers = values, start, markers
        self._path = None
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802
        self._path = None
        super().resizeEvent(event)

    def _rebuild(self) -> None:
        self._path = QPainterPath()
        self._marks = []
        self._baseline_y = None
        values = self._values
        if len(values) < 2:
            return
        lows = [float(m.price) for m in self._markers]
        lo, hi = min(values), max(values)
        if lows:
            lo, hi = min(lo, min(lows)), max(hi, max(lows))
        span = (hi - lo) or 1.0
        # Marker size follows the text size (which scales with the window), not the plot height.
        mark = max(3.0, min(self.height() / 8, self.fontMetrics().height() * 0.45))
        w, h = self.width() - 1, self.height() - 2 * mark - 2
        top = mark + 1
        step = w / (len(values) - 1)

        def y_of(price: float) -> float:
            return top + (hi - price) / span * h

        self._path.moveTo(0, y_of(values[0]))
        for i, v in enumerate(values[1:], 1):
            self._path.lineTo(i * step, y_of(v))
        self._baseline_y = y_of(values[0])
        if self._start is None:
            return
        for m in self._markers:
            index = (m.ts - self._start) // 60
            if not 0 <= index < len(values):
                continue  # a fill from another session
            x, y = index * step, y_of(float(m.price))
            if m.side == "buy":
                tip, base = y + 1, y + mark * 1.6
                tri = QPolygonF([QPointF(x, tip), QPointF(x - mark, base), QPointF(x + mark, base)])
                self._marks.append((tri, theme.GREEN))
            else:
                tip, base = y - 1, y - mark * 1.6
                tri = QPolygonF([QPointF(x, tip), QPointF(x - mark, base), QPointF(x + mark, base)])
                self._marks.append((tri, theme.RED))

    def paintEvent(self, _event) -> None:  # noqa: N802
        if self._path is None:
            self._rebuild()
        path = self._path
        if len(self._values) < 2 or path is None:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._baseline_y is not None:
            painter.setPen(QPen(BASELINE, 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(0, self._baseline_y), QPointF(self.width(), self._baseline_y))
        # A 1-px antialiased stroke is ~25x cheaper than a wider one in Qt's raster engine; a bolder
        # line on big screens is a few of them, offset by sub-pixel steps.
        strokes = max(1, round(self.height() / 90))
        painter.setPen(QPen(LINE, 1))
        painter.save()
        for k in range(strokes):
            painter.translate(0, 0.7 if k else 0)
            painter.drawPath(path)
        painter.restore()
        painter.setPen(Qt.PenStyle.NoPen)
        for poly, color in self._marks:
            painter.setBrush(color)
            painter.drawPolygon(poly)
