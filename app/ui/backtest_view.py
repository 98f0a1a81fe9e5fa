"""The add dialog's backtest panel: progress with a cancel while it runs, then what the algorithm would
have done over the chosen recent sessions beside simply buying and holding.

The panel only shows; the add dialog starts and cancels the job and says which page to show.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from decimal import Decimal
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QGridLayout, QHBoxLayout, QHeaderView,
                               QProgressBar, QSizePolicy, QStackedWidget, QTableView,
                               QVBoxLayout, QWidget)

from app.engine.portfolio.money import format_money, format_pct
from app.ui import theme
from app.ui.card import STATE_COLORS, pnl_state
from app.ui.overlay import Overlay
from app.ui.transactions_model import TransactionsModel
from app.ui.widgets import ElidedLabel, button, enable_kinetic_scrolling, label, local_time, read_only_view

PERIODS = (5, 20, 60, 120, 250)  # sessions; 20 (about a month) is the default
DEFAULT_SESSIONS = 20
LAST_TRADES = 50
TRADE_COLUMNS = ("TIME", "SIDE", "SHARES", "PRICE")
WIDEST_TIME = "Wed 30 Sep 15:59"  # the time column's text at its widest
RUNNING, RESULTS, FAILED = 0, 1, 2
BENCHMARK = QColor("#9ca3af")
BASELINE = QColor("#374151")


def trade_row(trade: Any) -> tuple[str, str, str, str]:
    """A backtest trade as table text: local time, side, shares, price."""
    return (local_time(trade.timestamp, "%a %d %b %H:%M"), trade.side.upper(), f"{trade.shares:,}",
            format_money(trade.price))


def _ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


class EquityChart(QWidget):
    """The algorithm's equity (white, solid) over buy-and-hold's (grey, dashed) on one shared scale,
    with the starting capital dotted. Drawn once per data or size change into a cached pixmap."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._equity: tuple[float, ...] = ()
        self._benchmark: tuple[float, ...] = ()
        self._capital = 0.0
        self._labels = ("", "")
        self._cache: QPixmap | None = None
        self._render_queued = False
        self._steps: Generator[QPixmap | None, None, None] | None = None  # a picture being drawn
        self.draw_turns = 0  # loop turns the last picture took to draw
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(60)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(300, 160)

    @property
    def point_count(self) -> tuple[int, int]:
        """Points drawn: (equity, buy-and-hold)."""
        return len(self._equity), len(self._benchmark)

    def set_data(self, equity: Sequence[float], benchmark: Sequence[float], capital: float,
                 first: str = "", last: str = "") -> None:
        """Show both curves (same instants, evenly spaced) and the dates under the ends."""
        self._equity, self._benchmark = tuple(equity), tuple(benchmark)
        self._capital, self._labels = float(capital), (first, last)
        self._cache = None
        self._render_soon()

    def resizeEvent(self, event) -> None:  # noqa: N802
        self._cache = None
        self._render_soon()
        super().resizeEvent(event)

    def _render_soon(self) -> None:
        # Drawing two 1000-point antialiased curves takes about a frame: the picture is drawn over
        # the next loop turns, one curve per turn (1 ms timers, not posted calls, so that they never
        # run in the turn of the results page's own set-up and first paint), and shown when whole.
        if self._steps is not None:
            self._steps.close()  # a picture for old data or an old size: its painter ends
            self._steps = None
        if not self._render_queued:
            self._render_queued = True
            QTimer.singleShot(1, self._render_step)

    def _render_step(self) -> None:
        self._render_queued = False
        if not self._stale():
            return
        if self._steps is None:
            self._steps, self.draw_turns = self._render_steps(), 0
        self.draw_turns += 1
        pixmap = next(self._steps, None)
        if pixmap is None:  # more to draw on the next turn
            self._render_queued = True
            QTimer.singleShot(1, self._render_step)
            return
        self._steps, self._cache = None, pixmap
        self.update()

    @property
    def drawn(self) -> bool:
        """True when the picture for the current data and size is whole."""
        return not self._stale()

    def _stale(self) -> bool:
        return self._cache is None or self._cache.size() != self.size() * self.devicePixelRatioF()

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        cache = self._cache
        if cache is None or self._stale():
            if self._render_queued:  # being drawn: black until the picture is whole
                painter.fillRect(self.rect(), theme.BLACK)
                return
            cache = self._cache = self._render()
        painter.drawPixmap(0, 0, cache)

    def _render(self) -> QPixmap:
        """The whole picture at once."""
        *_, pixmap = self._render_steps()
        assert pixmap is not None
        return pixmap

    def _render_steps(self) -> Generator[QPixmap | None, None, None]:
        """Draws the picture, yielding None between its costly parts and the pixmap at the end."""
        ratio = self.devicePixelRatioF()
        pixmap = QPixmap(self.size() * ratio)
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(theme.BLACK)
        if len(self._equity) < 2:
            yield pixmap
            return
        painter = QPainter(pixmap)
        try:
            yield from self._draw(painter, pixmap)
        finally:
            if painter.isActive():
                painter.end()

    def _draw(self, painter: QPainter, pixmap: QPixmap) -> Generator[QPixmap | None, None, None]:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setFont(self.font())
        fm = self.fontMetrics()
        values = self._equity + self._benchmark + (self._capital,)
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        text_h = fm.height()
        left = fm.horizontalAdvance(format_money(Decimal(round(max(abs(hi), abs(lo)))))) + fm.averageCharWidth()
        plot = QRectF(left, text_h / 2, max(10.0, self.width() - left - 2), max(10.0, self.height() - 1.6 * text_h))

        def y_of(value: float) -> float:
            return plot.top() + (hi - value) / span * plot.height()

        def path_of(points: tuple[float, ...]) -> QPainterPath:
            path = QPainterPath()
            step = plot.width() / (len(points) - 1)
            path.moveTo(plot.left(), y_of(points[0]))
            for i, v in enumerate(points[1:], 1):
                path.lineTo(plot.left() + i * step, y_of(v))
            return path

        painter.setPen(QPen(BASELINE, 1))
        painter.drawLine(QPointF(plot.left(), plot.top()), QPointF(plot.left(), plot.bottom()))
        painter.drawLine(QPointF(plot.left(), plot.bottom()), QPointF(plot.right(), plot.bottom()))
        painter.setPen(QPen(BASELINE, 1, Qt.PenStyle.DotLine))
        base_y = y_of(self._capital)
        painter.drawLine(QPointF(plot.left(), base_y), QPointF(plot.right(), base_y))
        width = max(1.5, self.height() / 110)
        if len(self._benchmark) >= 2:
            painter.setPen(QPen(BENCHMARK, width, Qt.PenStyle.DashLine))
            painter.drawPath(path_of(self._benchmark))
            yield None
        painter.setPen(QPen(theme.WHITE, width + 0.5))
        painter.drawPath(path_of(self._equity))
        # Axis figures in the margins, never over the lines.
        painter.setPen(theme.DIM)
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        marks = [hi, lo]
        if min(abs(y_of(self._capital) - y_of(v)) for v in marks) > text_h:  # the capital, if it has room
            marks.append(self._capital)
        for value in marks:
            y = y_of(value)
            painter.drawText(QRectF(0, y - text_h / 2, left - 4, text_h), int(right),
                             format_money(Decimal(round(value))).removesuffix(".00"))
        first, last = self._labels
        bottom = QRectF(plot.left(), plot.bottom() + 2, plot.width(), text_h)
        painter.drawText(bottom, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), first)
        painter.drawText(bottom, int(right), last)
        painter.end()
        yield pixmap


class BacktestView(Overlay):
    """The backtest panel over the add form. The dialog drives it with ``show_running``,
    ``set_progress``, ``show_result`` and ``show_error``; the person's choices come out as signals."""

    cancel_requested = Signal()
    back_requested = Signal()
    create_requested = Signal()
    period_chosen = Signal(int)

    def __init__(self, parent: QWidget, metrics: theme.Metrics) -> None:
        super().__init__(parent, metrics)
        self.setObjectName("backtestView")
        self._result: Any = None
        self._sessions = DEFAULT_SESSIONS

        self.title = ElidedLabel(size="large")
        self.subtitle = ElidedLabel(size="small")
        self.subtitle.set_color(theme.DIM)

        # Page: running.
        self.status = label("", wrap=True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.progress = QProgressBar()
        self.progress.setObjectName("backtestProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress_text = label("0%", size="large")
        self.progress_text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.cancel_button = button("CANCEL", kind="danger")
        self.cancel_button.setObjectName("backtestCancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        running = QWidget()
        run_layout = QVBoxLayout(running)
        run_layout.addStretch(1)
        run_layout.addWidget(self.status)
        run_layout.addWidget(self.progress)
        run_layout.addWidget(self.progress_text)
        run_layout.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignHCenter)
        run_layout.addStretch(1)

        # Page: results. Figures on the left, the curves and the last trades on the right.
        self.figures: dict[str, ElidedLabel] = {}
        self.captions: dict[str, ElidedLabel] = {}
        grid = self._grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        for row, (key, caption) in enumerate((
                ("pnl", "P&L"), ("buy_and_hold", "BUY & HOLD"), ("edge", "VS BUY & HOLD"),
                ("drawdown", "MAX DRAWDOWN"), ("trades", "TRADES"), ("round_trips", "ROUND TRIPS"),
                ("win_rate", "WIN RATE"), ("exposure", "EXPOSURE"), ("final", "ENDS WITH"))):
            cap = ElidedLabel(caption, size="small")
            cap.set_color(theme.DIM)
            cap.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)  # captions never elide
            value = ElidedLabel(align=Qt.AlignmentFlag.AlignRight)
            value.setObjectName(f"bt_{key}")
            grid.addWidget(cap, row, 0)
            grid.addWidget(value, row, 1)
            self.figures[key] = value
            self.captions[key] = cap
        self.figures["pnl"].setProperty("textSize", "large")
        self.note = label("", size="small", wrap=True)
        theme.set_text_color(self.note, theme.AMBER)
        self.note.hide()
        left = QVBoxLayout()
        left.addLayout(grid)
        left.addWidget(self.note)
        left.addStretch(1)

        self.legend_algo = ElidedLabel("━━ ALGORITHM", size="small")
        self.legend_hold = ElidedLabel("╍╍ BUY & HOLD", size="small")
        self.legend_hold.set_color(BENCHMARK)
        legend = QHBoxLayout()
        legend.addWidget(self.legend_algo)
        legend.addWidget(self.legend_hold)
        self.chart = EquityChart()
        self.chart.setProperty("textSize", "small")
        self.trades_caption = ElidedLabel("LAST TRADES", size="small")
        self.trades_caption.set_color(theme.DIM)
        self.trades = TransactionsModel(TRADE_COLUMNS, trade_row, self)
        self.table = read_only_view(QTableView())
        self.table.setModel(self.trades)
        self.table.setObjectName("backtestTrades")
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        # The time column's width comes from the font, not from measuring every row when they arrive.
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Fixed)
        enable_kinetic_scrolling(self.table.viewport(), horizontal=False)
        right = QVBoxLayout()
        right.setSpacing(2)
        right.addLayout(legend)
        right.addWidget(self.chart, 3)
        right.addWidget(self.trades_caption)
        right.addWidget(self.table, 2)
        self._results_page = results = QWidget()
        cols = QHBoxLayout(results)
        cols.setContentsMargins(0, 0, 0, 0)
        cols.addLayout(left, 2)
        cols.addSpacing(8)
        cols.addLayout(right, 3)

        # Page: failed.
        self.error = label("", wrap=True)
        self.error.setObjectName("backtestError")
        theme.set_text_color(self.error, theme.RED)
        self.error.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        hint = label("Pick another period below, or go BACK to change the inputs.", size="small", dim=True,
                     wrap=True)
        failed = QWidget()
        failed_layout = QVBoxLayout(failed)
        failed_layout.addWidget(self.error)
        failed_layout.addWidget(hint)
        failed_layout.addStretch(1)

        self.pages = QStackedWidget()
        self.pages.addWidget(running)
        self.pages.addWidget(results)
        self.pages.addWidget(failed)

        # Bottom row: back, the period, create.
        self.back_button = button("BACK")
        self.back_button.setObjectName("backtestBack")
        self.back_button.clicked.connect(self.back_requested)
        self.period_caption = label("SESSIONS", size="small", dim=True)
        self.period_group = QButtonGroup(self)
        self.period_group.setExclusive(True)
        self.period_buttons: dict[int, Any] = {}
        bottom = QHBoxLayout()
        bottom.addWidget(self.back_button)
        bottom.addSpacing(8)
        bottom.addWidget(self.period_caption)
        for sessions in PERIODS:
            btn = button(str(sessions))
            btn.setObjectName(f"backtestPeriod{sessions}")
            btn.setCheckable(True)
            btn.clicked.connect(lambda _=False, n=sessions: self._choose_period(n))
            self.period_group.addButton(btn)
            self.period_buttons[sessions] = btn
            bottom.addWidget(btn)
        bottom.addStretch(1)
        self.create_button = button("CREATE CARD", kind="primary")
        self.create_button.setObjectName("backtestCreate")
        self.create_button.clicked.connect(self.create_requested)
        bottom.addWidget(self.create_button)

        self.body_layout = layout = QVBoxLayout(self.body)
        titles = QVBoxLayout()
        titles.setSpacing(0)
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        layout.addLayout(titles)
        layout.addWidget(self.pages, 1)
        layout.addLayout(bottom)
        self.apply_metrics(metrics)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Margins, bar and row heights for a new window size."""
        super().apply_metrics(metrics)
        pad = metrics.pad_px
        self.body_layout.setContentsMargins(pad, pad // 2, pad, pad)
        self.body_layout.setSpacing(max(4, pad // 2))
        self.table.verticalHeader().setDefaultSectionSize(max(22, round(metrics.small_px * 1.9)))
        self.table.setColumnWidth(0, self.table.fontMetrics().horizontalAdvance(WIDEST_TIME) + 2 * pad)
        self._grid.setVerticalSpacing(max(3, round(metrics.pad_px * 0.6)))
        self.progress.setFixedHeight(max(16, round(metrics.touch_px / 2)))
        self.progress.setStyleSheet(
            f"QProgressBar {{ border: 1px solid #4b5563; border-radius: {metrics.radius_px}px; background: #000000; }}"
            f"QProgressBar::chunk {{ background: #ffffff; }}")
        self.cancel_button.setMinimumWidth(metrics.touch_px * 4)
        self.chart.setMinimumHeight(max(60, round(90 * metrics.scale)))

    # -- pages -----------------------------------------------------------------------------------

    @property
    def page(self) -> int:
        """RUNNING, RESULTS or FAILED."""
        return self.pages.currentIndex()

    @property
    def result(self) -> Any:
        """The BacktestResult shown (None while running or after a failure)."""
        return self._result

    @property
    def sessions(self) -> int:
        """The period shown, in sessions."""
        return self._sessions

    def show_running(self, heading: str, detail: str, sessions: int) -> None:
        """Open on the progress page for a new run over ``sessions`` sessions."""
        self._result = None
        self._sessions = sessions
        self.title.setText(heading)
        self.subtitle.setText(detail)
        self.status.setText(f"Replaying the last {sessions} sessions, minute by minute…")
        self.set_progress(0.0)
        self._check_period(sessions)
        self.pages.setCurrentIndex(RUNNING)
        self._set_running(True)
        if not self.isVisible():
            self.open_overlay()
        # The results page's style is worked out while the replay runs, in a turn of its own, not in
        # the turn that shows the result.
        QTimer.singleShot(1, self._results_page.ensurePolished)

    def set_detail(self, detail: str) -> None:
        """Replace the line under the title (the dates, once the engine has chosen them)."""
        self.subtitle.setText(detail)

    def set_progress(self, fraction: float) -> None:
        """Move the bar (0..1)."""
        fraction = min(1.0, max(0.0, float(fraction)))
        self.progress.setValue(round(fraction * 1000))
        self.progress_text.setText(f"{fraction * 100:.0f}%")

    @property
    def progress_fraction(self) -> float:
        """The bar's position, 0..1."""
        return self.progress.value() / 1000

    def show_error(self, text: str) -> None:
        """The run failed: say why, in place of the results."""
        self._result = None
        self.error.setText(text)
        self.pages.setCurrentIndex(FAILED)
        self._set_running(False)

    @property
    def error_text(self) -> str:
        """The failure shown ("" when none)."""
        return self.error.text() if self.page == FAILED else ""

    def show_result(self, result: Any) -> None:
        """Fill the figures, the curves and the last trades from a BacktestResult."""
        self._result = result
        color = STATE_COLORS[pnl_state(result.pnl)]
        self._figure("pnl", f"{format_money(result.pnl, signed=True)}  {format_pct(result.pnl_pct)}", color)
        self._figure("buy_and_hold", f"{format_money(result.buy_and_hold_pnl, signed=True)}  "
                                     f"{format_pct(result.buy_and_hold_pnl_pct)}",
                     STATE_COLORS[pnl_state(result.buy_and_hold_pnl)])
        edge = result.pnl - result.buy_and_hold_pnl
        verdict = "better" if edge > 0 else "worse" if edge < 0 else "same"
        self._figure("edge", f"{format_money(edge, signed=True)}  {verdict}",
                     STATE_COLORS[pnl_state(edge)])
        drawdown = Decimal(str(round(result.max_drawdown, 2)))
        self._figure("drawdown", f"{format_money(-drawdown)}  {format_pct(-result.max_drawdown_pct)}",
                     theme.RED if drawdown > 0 else theme.WHITE)
        self._figure("trades", f"{len(result.trades):,}")
        self._figure("round_trips", f"{result.round_trips:,}  ({result.winning_trips:,} won)")
        self._figure("win_rate", _ratio_text(result.win_rate))
        self._figure("exposure", f"{result.exposure_pct:.1f}% of minutes")
        held = f"{result.final_shares:,} {result.symbol} + " if result.final_shares else ""
        self._figure("final", f"{held}{format_money(result.uninvested)} cash")
        notes = []
        data = getattr(result, "data", None)
        if data is not None:
            notes.append(f"Data: {data.text}.")
        if result.refused_orders:
            notes.append(f"{result.refused_orders:,} order(s) refused by the risk rules.")
        if result.unfilled_order:
            notes.append(f"Not filled: {result.unfilled_order}.")
        self.note.setText(" ".join(notes))
        self.note.setVisible(bool(notes))
        equity = [p.value for p in result.equity_curve]
        benchmark = [v for _, v in getattr(result, "benchmark_curve", ())]
        stamps = [p.timestamp for p in result.equity_curve]
        self.chart.set_data(equity, benchmark if len(benchmark) == len(equity) else (), float(result.capital),
                            local_time(stamps[0], "%d %b") if stamps else "",
                            local_time(stamps[-1], "%d %b") if stamps else "")
        self._fill_trades(result.trades)
        self.pages.setCurrentIndex(RESULTS)
        self._set_running(False)

    def figure_text(self, key: str) -> str:
        """The text of one figure (tests and accessibility)."""
        return self.figures[key].text()

    # -- internals -------------------------------------------------------------------------------

    def _figure(self, key: str, text: str, color: QColor = theme.WHITE) -> None:
        self.figures[key].setText(text)
        self.figures[key].set_color(color)

    def _fill_trades(self, trades: Sequence[Any]) -> None:
        shown = list(trades[-LAST_TRADES:])[::-1]
        self.trades_caption.setText(
            "NO TRADES" if not trades else
            f"LAST {len(shown)} OF {len(trades):,} TRADES, NEWEST FIRST" if len(trades) > len(shown) else
            f"{len(trades):,} TRADE{'S' if len(trades) != 1 else ''}, NEWEST FIRST")
        self.trades.set_rows(shown)  # rows are formatted as the table paints them
        self.table.scrollToTop()

    def _set_running(self, running: bool) -> None:
        self.back_button.setEnabled(not running)
        self.create_button.setEnabled(not running)
        for btn in self.period_buttons.values():
            btn.setEnabled(not running)

    def _check_period(self, sessions: int) -> None:
        btn = self.period_buttons.get(sessions)
        if btn is not None:
            btn.setChecked(True)
        else:
            checked = self.period_group.checkedButton()
            if checked is not None:  # a period not on the buttons: none is lit
                self.period_group.setExclusive(False)
                checked.setChecked(False)
                self.period_group.setExclusive(True)

    def _choose_period(self, sessions: int) -> None:
        self.period_chosen.emit(sessions)
