"""The detail view's chart: a card's price over its last few sessions, its fills, each session dated."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QPainter, QPen

from app.engine.events import CardChart
from app.ui import theme
from app.ui.sparkline import BASELINE, Sparkline


class SessionChart(Sparkline):
    """A :class:`Sparkline` on a trading-time axis (sessions end to end) with a dated line at each open."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._sessions: tuple[tuple[int, str], ...] = ()
        self.setMinimumHeight(60)
        self.setProperty("textSize", "small")

    def set_chart(self, chart: CardChart | None) -> None:
        """Show ``chart`` (None: clear)."""
        if chart is None:
            self._sessions = ()
            self.set_data((), None)
            return
        self._sessions = chart.sessions
        self.set_data(chart.closes, 0, chart.markers, times=chart.times, span=chart.span)
        self.update()

    @property
    def session_labels(self) -> tuple[str, ...]:
        """The dates under the chart, oldest first."""
        return tuple(text for _x, text in self._sessions)

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if not self._sessions or self.point_count < 2:
            return
        painter = QPainter(self)
        painter.setPen(QPen(BASELINE, 1, Qt.PenStyle.DashLine))
        height = self.fontMetrics().height()
        xs = [self.x_of(at) or 0.0 for at, _text in self._sessions]
        for i, ((_at, text), x) in enumerate(zip(self._sessions, xs)):
            if i:
                painter.setPen(QPen(BASELINE, 1, Qt.PenStyle.DashLine))
                painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))
            right = xs[i + 1] if i + 1 < len(xs) else float(self.width())
            painter.setPen(theme.DIM)
            painter.drawText(QRectF(x + 3, self.height() - height, max(0.0, right - x - 6), height),
                             int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
