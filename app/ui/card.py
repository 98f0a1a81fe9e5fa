"""One card: a running algorithm instance, its figures, its session sparkline, its state.

The border follows the seed's rule: green while in profit, red at a loss, white at break-even.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from PySide6.QtCore import QPoint, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QVBoxLayout, QWidget

from app.engine.events import CardSnapshot
from app.engine.portfolio.money import format_money, format_money_compact, format_pct
from app.ui import theme
from app.ui.sparkline import Sparkline
from app.ui.widgets import ElidedLabel, local_time, separator

WAITING_TEXT = "waiting for data"
_TAP_SLOP_PX = 12


def pnl_state(pnl: Decimal) -> str:
    """'profit', 'loss' or 'even' for a P&L amount, judged at display precision (cents)."""
    cents = pnl.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)  # the same cents format_money shows
    if cents > 0:
        return "profit"
    if cents < 0:
        return "loss"
    return "even"


STATE_COLORS = {"profit": theme.GREEN, "loss": theme.RED, "even": theme.WHITE}


def _price_text(price: Decimal | None) -> str:
    if price is None:
        return "—"
    return format_money(price) if price >= 1 else f"${price:.4f}"


class Card(QWidget):
    """Shows one :class:`CardSnapshot`; ``update_snapshot`` touches only what changed."""

    tapped = Signal(int)

    def __init__(self, snapshot: CardSnapshot, metrics: theme.Metrics, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.instance_id = snapshot.instance_id
        self._snapshot: CardSnapshot | None = None
        self._state = "even"
        self._border_px = 2
        self._press: QPoint | None = None
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

        # Read from across the room: ticker and price at figure size, the P&L at glance size (≥ 40 px on
        # the 7" panel); everything else is for someone standing at the wall.
        self.title = ElidedLabel(size="figure", background=theme.BLACK)  # the ticker: never elided
        self.title.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        # "· SMA 20/50": one size down, so both fit on 244 px
        self.algo = ElidedLabel(size="large", background=theme.BLACK)
        self.subtitle = ElidedLabel(size="small", background=theme.BLACK)
        self.subtitle.set_color(theme.DIM)
        self.price = ElidedLabel(size="figure", background=theme.BLACK)
        self.price_time = ElidedLabel(size="small", align=Qt.AlignmentFlag.AlignRight, background=theme.BLACK)
        self.price_time.set_color(theme.DIM)
        self.price_time.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        self.sparkline = Sparkline()
        self.pnl = ElidedLabel(size="glance", background=theme.BLACK)
        self.pnl_pct = ElidedLabel(size="large", align=Qt.AlignmentFlag.AlignRight, background=theme.BLACK)
        self.value = ElidedLabel(align=Qt.AlignmentFlag.AlignRight, background=theme.BLACK)
        self.shares = ElidedLabel(align=Qt.AlignmentFlag.AlignRight, background=theme.BLACK)
        self.trades = ElidedLabel(align=Qt.AlignmentFlag.AlignRight, background=theme.BLACK)
        self.last_action = ElidedLabel(size="small", background=theme.BLACK)
        self.last_action.set_color(theme.DIM)
        self.status = ElidedLabel(size="small", lines=2, background=theme.BLACK)

        self._layout = layout = QVBoxLayout(self)
        layout.setSpacing(2)
        heading = QHBoxLayout()
        heading.setSpacing(6)
        heading.addWidget(self.title)
        heading.addWidget(self.algo, 1, Qt.AlignmentFlag.AlignBottom)
        layout.addLayout(heading)
        layout.addWidget(self.subtitle)
        row = QHBoxLayout()
        row.addWidget(self.price, 1)
        row.addWidget(self.price_time)
        layout.addLayout(row)
        layout.addWidget(self.sparkline, 1)
        layout.addWidget(self.pnl)
        layout.addWidget(separator())
        for caption, widget in (("RETURN", self.pnl_pct), ("VALUE", self.value), ("SHARES", self.shares),
                                ("TRADES", self.trades)):
            row = QHBoxLayout()
            cap = ElidedLabel(caption, size="small", background=theme.BLACK)
            cap.set_color(theme.DIM)
            row.addWidget(cap, 1)
            row.addWidget(widget, 2)
            layout.addLayout(row)
        layout.addWidget(self.last_action)
        layout.addWidget(self.status)
        self.apply_metrics(metrics)
        self.update_snapshot(snapshot)

    # -- state -----------------------------------------------------------------------------------

    @property
    def snapshot(self) -> CardSnapshot | None:
        """The snapshot on screen."""
        return self._snapshot

    @property
    def pnl_state(self) -> str:
        """'profit', 'loss' or 'even' (drives the border colour)."""
        return self._state

    def border_color(self) -> QColor:
        """The colour the border is painted in."""
        return STATE_COLORS[self._state]

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Resize for a new window size."""
        self._border_px = max(2, round(2 * metrics.scale))
        inset = self._border_px + metrics.pad_px
        self._layout.setContentsMargins(inset, inset, inset, inset)
        self.setFixedWidth(metrics.card_width)

    def update_snapshot(self, snap: CardSnapshot) -> None:
        """Show ``snap``: only the parts whose fields changed are set (texts, colours, the sparkline),
        and the border is repainted only on a state change."""
        old = self._snapshot
        if old == snap:
            return
        self._snapshot = snap
        first = old is None
        # The ticker and a short title of the algorithm with its parameters are what a glance across
        # the room needs; the seed's machine name (with its creation stamp) is in the detail view.
        if old is None or (old.ticker, old.label, old.algorithm_name, old.algorithm_type, old.params_text) != (
                snap.ticker, snap.label, snap.algorithm_name, snap.algorithm_type, snap.params_text):
            self.title.setText(snap.ticker)
            self.algo.setText(f"· {snap.title.split(' · ', 1)[1]}")
            self.subtitle.setText(" · ".join(p for p in (f"#{snap.instance_id}", snap.params_text) if p))
        if old is None or old.waiting_for_data != snap.waiting_for_data:
            # "waiting for data" would not fit at figure size; a re-polish only when that flips.
            self.price.setProperty("textSize", "base" if snap.waiting_for_data else "figure")
            self.price.style().unpolish(self.price)
            self.price.style().polish(self.price)
            self.price.set_color(theme.AMBER if snap.waiting_for_data else theme.WHITE)
        if snap.waiting_for_data:
            self.price.setText(WAITING_TEXT)
            self.price_time.setText("")
        else:
            if old is None or old.price != snap.price:
                self.price.setText(_price_text(snap.price))
            if old is None or old.price_time != snap.price_time:
                self.price_time.setText(local_time(snap.price_time))
        if old is None or (old.sparkline, old.sparkline_start, old.markers, old.sparkline_times,
                           old.sparkline_span) != (snap.sparkline, snap.sparkline_start, snap.markers,
                                                   snap.sparkline_times, snap.sparkline_span):
            self.sparkline.set_data(snap.sparkline, snap.sparkline_start, snap.markers,
                                    times=snap.sparkline_times, span=snap.sparkline_span)

        state = pnl_state(snap.pnl)
        if old is None or old.pnl != snap.pnl:
            self.pnl.setText(format_money_compact(snap.pnl, signed=True))
        if old is None or old.pnl_pct != snap.pnl_pct:
            self.pnl_pct.setText(format_pct(snap.pnl_pct))
        if first or state != self._state:
            color = STATE_COLORS[state]
            self.pnl.set_color(color)
            self.pnl_pct.set_color(color)
        if old is None or old.value != snap.value:
            self.value.setText(format_money(snap.value))
        if old is None or old.shares != snap.shares:
            self.shares.setText(f"{snap.shares:,}")
        if old is None or old.trade_count != snap.trade_count:
            self.trades.setText(f"{snap.trade_count:,}")
        self.last_action.setText(snap.last_action or "no trades yet")

        if old is None or (old.faulted_reason, old.refused_reason) != (snap.faulted_reason, snap.refused_reason):
            if snap.faulted_reason:
                self.status.setText(f"FAULTED: {snap.faulted_reason}")
                self.status.set_color(theme.RED)
            elif snap.refused_reason:
                self.status.setText(f"ORDER REFUSED: {snap.refused_reason}")
                self.status.set_color(theme.AMBER)
            else:
                self.status.setText("")
        if state != self._state or old is None or bool(old.faulted_reason) != bool(snap.faulted_reason):
            self._state = state
            self.update()

    @property
    def title_text(self) -> str:
        """The card's whole title as a person reads it: ``NVDA · SMA 20/50``."""
        return f"{self.title.text()} {self.algo.text()}"

    @property
    def status_text(self) -> str:
        """The faulted / refused line ("" when the card is healthy)."""
        return self.status.text()

    # -- painting and touch ----------------------------------------------------------------------

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), theme.BLACK)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        half = self._border_px / 2
        rect = QRectF(self.rect()).adjusted(half, half, -half, -half)
        pen = QPen(self.border_color(), self._border_px)
        if self._snapshot is not None and self._snapshot.faulted_reason:
            pen.setStyle(Qt.PenStyle.DashLine)  # a stopped-by-fault card must not look like a healthy one
        painter.setPen(pen)
        painter.drawRoundedRect(rect, 4, 4)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self._press = event.position().toPoint()
        event.accept()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        start, self._press = self._press, None
        if start is None or not self.rect().contains(event.position().toPoint()):
            return
        if (event.position().toPoint() - start).manhattanLength() <= _TAP_SLOP_PX:
            self.tapped.emit(self.instance_id)
