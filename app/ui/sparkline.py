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
    """Draws closes scaled to its box on a session time axis. The path is rebuilt only when data or size change."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: tuple[float, ...] = ()
        self._start: int | None = None
        self._markers: tuple[TradeMarker, ...] = ()
        self._times: tuple[int, ...] = ()
        self._span: tuple[int, int] | None = None
        self._path: QPainterPath | None = None
        self._marks: list[tuple[QPolygonF, QColor, str]] = []
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
                 markers: Sequence[TradeMarker] = (), *, times: Sequence[int] = (),
                 span: tuple[int, int] | None = None) -> None:
        """Show ``values`` and the fills in ``markers`` on one time axis.

        ``times`` are the values' bar minutes (epoch s; default one a minute from ``start``) and
        ``span`` the session's first and last minute (default the first and last value), so a
        downsampled line, a line with gaps and a session still in progress all put a fill at its time.
        """
        values = tuple(values)
        markers = tuple(markers)
        times = tuple(times)
        if (values, start, markers, times, span) == (self._values, self._start, self._markers,
                                                      self._times, self._span):
            return
        self._values, self._start, self._markers, self._times, self._span = values, start, markers, times, span
        self._path = None
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802
        self._path = None
        super().resizeEvent(event)

    def axis(self) -> tuple[tuple[int, ...], int, int] | None:
        """The values' times and the axis' first and last minute, or None when there is no time axis."""
        values = self._values
        if self._times and len(self._times) == len(values):
            times = self._times
        elif self._start is not None:
            times = tuple(self._start + 60 * i for i in range(len(values)))
        else:
            return None
        first, last = self._span if self._span is not None else (times[0], times[-1])
        first, last = min(first, times[0]), max(last, times[-1])
        return times, first, max(last, first + 60)

    def x_of(self, ts: int) -> float | None:
        """Where a moment lands on the x axis (None: outside the session shown, or no axis)."""
        axis = self.axis()
        if axis is None:
            return None
        _, first, last = axis
        minute = ts - ts % 60
        # A fill is stamped a few seconds into the minute after its decision; one stamped just after
        # the close belongs to the session's last minute.
        if minute < first or minute > last + 60:
            return None
        return (min(minute, last) - first) / (last - first) * (self.width() - 1)

    def line_xs(self) -> list[float]:
        """The x of every drawn value, on the same axis as :meth:`x_of`."""
        axis = self.axis()
        n = len(self._values)
        if axis is None:
            return [i * (self.width() - 1) / max(1, n - 1) for i in range(n)]
        times, first, last = axis
        return [(t - first) / (last - first) * (self.width() - 1) for t in times]

    def marker_positions(self) -> list[tuple[float, float, str]]:
        """(x, y, side) of every marker drawn."""
        if self._path is None:
            self._rebuild()
        return [(poly.at(0).x(), poly.at(0).y(), side) for poly, _color, side in self._marks]

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
        h = self.height() - 2 * mark - 2
        top = mark + 1

        def y_of(price: float) -> float:
            return top + (hi - price) / span * h

        xs = self.line_xs()
        self._path.moveTo(xs[0], y_of(values[0]))
        for x, v in zip(xs[1:], values[1:]):
            self._path.lineTo(x, y_of(v))
        self._baseline_y = y_of(values[0])
        for m in self._markers:
            at = self.x_of(m.ts)
            if at is None:
                continue  # a fill from another session
            x, y = at, y_of(float(m.price))
            if m.side == "buy":
                tip, base = y + 1, y + mark * 1.6
                tri = QPolygonF([QPointF(x, tip), QPointF(x - mark, base), QPointF(x + mark, base)])
                self._marks.append((tri, theme.GREEN, m.side))
            else:
                tip, base = y - 1, y - mark * 1.6
                tri = QPolygonF([QPointF(x, tip), QPointF(x - mark, base), QPointF(x + mark, base)])
                self._marks.append((tri, theme.RED, m.side))

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
        for poly, color, _side in self._marks:
            painter.setBrush(color)
            painter.drawPolygon(poly)
