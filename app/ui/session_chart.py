"""The detail view's chart: a card's price over its last few sessions, its fills, each session dated."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from app.engine.events import CardChart
from app.ui import theme
from app.ui.sparkline import BASELINE, Sparkline


class _SessionLine(Sparkline):
    """The price line with a dashed line at each session's open."""

    def __init__(self, chart: SessionChart) -> None:
        super().__init__(chart)
        self._chart = chart

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if self.point_count < 2:
            return
        painter = QPainter(self)
        painter.setPen(QPen(BASELINE, 1, Qt.PenStyle.DashLine))
        for x in self._chart.session_xs()[1:]:
            painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))


class _DateRow(QWidget):
    """Each session's date under its part of the line, as long a form as its width allows."""

    def __init__(self, chart: SessionChart) -> None:
        super().__init__(chart)
        self._chart = chart
        self.setProperty("textSize", "small")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(100, self.fontMetrics().height() + 2)

    def paintEvent(self, _event) -> None:  # noqa: N802
        sessions = self._chart.sessions
        xs = self._chart.session_xs()
        if not sessions or len(xs) != len(sessions):
            return
        painter = QPainter(self)
        painter.setPen(theme.DIM)
        fm = self.fontMetrics()
        for i, (x, (_at, text)) in enumerate(zip(xs, sessions)):
            right = xs[i + 1] if i + 1 < len(xs) else float(self.width())
            room = right - x - 4
            words = text.split()  # "Mon 30 Nov" → "Mon 30" → "30"
            for shown in (text, " ".join(words[:2]), words[1] if len(words) > 1 else text):
                if fm.horizontalAdvance(shown) <= room:
                    painter.drawText(QRectF(x + 2, 0, room, self.height()),
                                     int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), shown)
                    break


class SessionChart(QWidget):
    """The last sessions of a card's ticker, sessions end to end (no nights), its fills as markers."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sessions: tuple[tuple[int, str], ...] = ()
        self.line = _SessionLine(self)
        self.line.setMinimumHeight(48)
        self.dates = _DateRow(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.line, 1)
        layout.addWidget(self.dates)

    def set_chart(self, chart: CardChart | None) -> None:
        """Show ``chart`` (None: clear)."""
        if chart is None:
            self.sessions = ()
            self.line.set_data((), None)
        else:
            self.sessions = chart.sessions
            self.line.set_data(chart.closes, 0, chart.markers, times=chart.times, span=chart.span)
        self.line.update()
        self.dates.update()

    def session_xs(self) -> list[float]:
        """Where each session starts on the line's x axis."""
        xs = [self.line.x_of(at) for at, _text in self.sessions]
        return [x for x in xs if x is not None]

    @property
    def session_labels(self) -> tuple[str, ...]:
        """The sessions' dates, oldest first."""
        return tuple(text for _x, text in self.sessions)

    def line_xs(self) -> list[float]:
        """The x of every close drawn."""
        return self.line.line_xs()

    def marker_positions(self) -> list[tuple[float, float, str]]:
        """(x, y, side) of every fill drawn."""
        return self.line.marker_positions()
