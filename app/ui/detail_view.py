"""One card in full: its figures, why it faulted, its transactions, and Stop / Resume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QHeaderView, QStackedWidget,
                               QTableView, QVBoxLayout, QWidget)

from app.engine.events import CardSnapshot
from app.engine.portfolio.money import format_money, format_pct, to_decimal
from app.ui import theme
from app.ui.card import STATE_COLORS, pnl_state
from app.ui.overlay import Overlay
from app.ui.session_chart import SessionChart
from app.ui.transactions_model import TransactionsModel
from app.ui.widgets import ElidedLabel, button, enable_kinetic_scrolling, label, local_time, parse_utc, read_only_view

COLUMNS = ("TIME", "SIDE", "SHARES", "PRICE", "VALUE")
KEEP, SELL = "keep", "sell"


def transaction_row(tx: Any) -> tuple[str, str, str, str, str]:
    """A transaction as table text: local time, side, shares, price, value."""
    when = parse_utc(tx.timestamp)
    price = to_decimal(tx.price, "price")
    return (local_time(when, "%a %d %b %H:%M") if when else str(tx.timestamp), tx.type.upper(),
            f"{tx.shares:,}", format_money(price), format_money(price * tx.shares))


class DetailView(Overlay):
    """Figures and history of one instance. Emits the user's choices; the window runs them (with a PIN).

    ``stop_chosen(instance_id, liquidate)`` only fires after the user picked what happens to the shares.
    """

    stop_requested = Signal(int)
    stop_chosen = Signal(int, bool)
    resume_requested = Signal(int)
    closed = Signal()

    def __init__(self, parent: QWidget, metrics: theme.Metrics) -> None:
        super().__init__(parent, metrics)
        self.setObjectName("detailView")
        self._snapshot: CardSnapshot | None = None
        self._loaded_trades = -1

        self.title = ElidedLabel(size="large")
        self.subtitle = ElidedLabel(size="small")
        self.subtitle.set_color(theme.DIM)
        self.close_button = button("CLOSE")
        self.close_button.setObjectName("detailClose")
        self.close_button.clicked.connect(self.close_view)

        self.figures: dict[str, ElidedLabel] = {}
        grid = QGridLayout()
        grid.setVerticalSpacing(2)
        for row, (key, caption) in enumerate((("pnl", "P&L"), ("value", "VALUE"), ("capital", "CAPITAL"),
                                              ("uninvested", "CASH LEFT"), ("shares", "SHARES"),
                                              ("price", "PRICE"), ("trades", "TRADES"))):
            cap = ElidedLabel(caption, size="small")
            cap.set_color(theme.DIM)
            value = ElidedLabel(align=Qt.AlignmentFlag.AlignRight)
            grid.addWidget(cap, row, 0)
            grid.addWidget(value, row, 1)
            self.figures[key] = value
        self.reason = label("", wrap=True)
        self.reason.hide()
        self.chart = SessionChart()  # the price over the last sessions with this card's fills
        self.chart_note = label("", size="small", dim=True)
        self.day_check = label("", size="small", dim=True, wrap=True)  # the evening check against its backtest
        self.day_check.setObjectName("detailDayCheck")
        self.day_check.hide()

        self.transactions = TransactionsModel(COLUMNS, transaction_row, self)
        self.table = read_only_view(QTableView())
        self.table.setModel(self.transactions)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setResizeContentsPrecision(40)  # size the time column from a screenful
        enable_kinetic_scrolling(self.table.viewport(), horizontal=False)
        self.table_note = label("Loading transactions…", size="small", dim=True)

        self.stop_button = button("STOP…", kind="danger")
        self.stop_button.setObjectName("detailStop")
        self.stop_button.clicked.connect(
            lambda: self._snapshot and self.stop_requested.emit(self._snapshot.instance_id))
        self.resume_button = button("RESUME", kind="primary")
        self.resume_button.setObjectName("detailResume")
        self.resume_button.clicked.connect(
            lambda: self._snapshot and self.resume_requested.emit(self._snapshot.instance_id))

        # Page 0: the figures and history. Page 1: what to do with the shares when stopping.
        info = QWidget()
        left = QVBoxLayout()
        left.addLayout(grid)
        left.addWidget(self.reason)
        left.addWidget(self.chart, 1)
        left.addWidget(self.chart_note)
        left.addWidget(self.day_check)
        right = QVBoxLayout()
        right.addWidget(self.table, 1)
        right.addWidget(self.table_note)
        cols = QHBoxLayout(info)
        cols.setContentsMargins(0, 0, 0, 0)
        cols.addLayout(left, 2)
        cols.addLayout(right, 3)

        self.choice = QWidget()
        self.choice_text = label("", wrap=True)
        self.sell_button = button("", kind="danger")
        self.sell_button.setObjectName("stopSell")
        self.keep_button = button("")
        self.keep_button.setObjectName("stopKeep")
        self.choice_cancel = button("DON'T STOP")
        self.choice_cancel.setObjectName("stopCancel")
        self.sell_note = label("", size="small", dim=True, wrap=True)
        self.keep_note = label("", size="small", dim=True, wrap=True)
        self.sell_button.clicked.connect(lambda: self._choose(True))
        self.keep_button.clicked.connect(lambda: self._choose(False))
        self.choice_cancel.clicked.connect(self.show_info)
        choice_layout = QVBoxLayout(self.choice)
        choice_layout.addWidget(self.choice_text)
        choice_layout.addWidget(self.sell_button)
        choice_layout.addWidget(self.sell_note)
        choice_layout.addWidget(self.keep_button)
        choice_layout.addWidget(self.keep_note)
        choice_layout.addStretch(1)
        choice_layout.addWidget(self.choice_cancel, 0, Qt.AlignmentFlag.AlignRight)

        self.pages = QStackedWidget()
        self.pages.addWidget(info)
        self.pages.addWidget(self.choice)

        top = QHBoxLayout()
        titles = QVBoxLayout()
        titles.setSpacing(0)
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        top.addLayout(titles, 1)
        top.addWidget(self.resume_button)
        top.addWidget(self.stop_button)
        top.addWidget(self.close_button)
        self.body_layout = layout = QVBoxLayout(self.body)
        layout.addLayout(top)
        layout.addWidget(self.pages, 1)
        self.apply_metrics(metrics)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Margins and table row heights for a new window size."""
        super().apply_metrics(metrics)
        self.body_layout.setContentsMargins(metrics.pad_px, metrics.pad_px, metrics.pad_px, metrics.pad_px)
        self.table.verticalHeader().setDefaultSectionSize(max(24, round(metrics.small_px * 2)))

    # -- content ---------------------------------------------------------------------------------

    @property
    def instance_id(self) -> int | None:
        """The instance shown."""
        return self._snapshot.instance_id if self._snapshot else None

    @property
    def snapshot(self) -> CardSnapshot | None:
        """The snapshot shown."""
        return self._snapshot

    def show_snapshot(self, snap: CardSnapshot) -> None:
        """Open (or refresh) for ``snap``."""
        first = self._snapshot is None or self._snapshot.instance_id != snap.instance_id
        self._snapshot = snap
        self.title.setText(snap.title)
        # The machine name lives here, for the logs and the command line (``autotrader stop ID``).
        self.subtitle.setText(" · ".join(p for p in (f"#{snap.instance_id}", snap.display_name, snap.params_text) if p))
        color = STATE_COLORS[pnl_state(snap.pnl)]
        self.figures["pnl"].setText(f"{format_money(snap.pnl, signed=True)}  {format_pct(snap.pnl_pct)}")
        self.figures["pnl"].set_color(color)
        self.figures["value"].setText(format_money(snap.value))
        self.figures["capital"].setText(format_money(snap.initial_capital))
        self.figures["uninvested"].setText(format_money(snap.uninvested))
        self.figures["shares"].setText(f"{snap.shares:,}")
        self.figures["price"].setText("waiting for data" if snap.price is None else
                                      f"{format_money(snap.price)} at {local_time(snap.price_time)}")
        self.figures["trades"].setText(f"{snap.trade_count:,}")
        if snap.faulted_reason:
            self.reason.setText(f"FAULTED — this card stopped trading:\n{snap.faulted_reason}")
            theme.set_text_color(self.reason, theme.RED)
        elif snap.refused_reason:
            self.reason.setText(f"Last order refused:\n{snap.refused_reason}")
            theme.set_text_color(self.reason, theme.AMBER)
        self.reason.setVisible(bool(snap.faulted_reason or snap.refused_reason))
        self.resume_button.setVisible(bool(snap.faulted_reason))
        if first:
            self.show_info()
            self._loaded_trades = -1
            self.transactions.set_rows(())
            self.table_note.setText("Loading transactions…")
            self.set_chart(None)
            self.set_day_check(None)

    @property
    def needs_transactions(self) -> bool:
        """True when the table is older than the card's trade count."""
        return self._snapshot is not None and self._loaded_trades != self._snapshot.trade_count

    def set_transactions(self, transactions: Sequence[Any]) -> None:
        """Show the history (newest first, as the engine returns them); rows are formatted lazily."""
        self.transactions.set_rows(transactions)
        self._loaded_trades = self._snapshot.trade_count if self._snapshot else len(transactions)
        count = len(transactions)
        self.table_note.setText("No transactions yet." if not count else f"{count:,} transaction(s), newest first.")

    def set_chart(self, chart: Any) -> None:
        """The CardChart of the card shown (None: no bars yet)."""
        self.chart.set_chart(chart)
        self.chart_note.setText("" if chart is None else f"LAST {len(chart.sessions)} SESSION(S)")

    def set_day_check(self, text: str | None) -> None:
        """The card's last day against its own backtest (None: not checked yet)."""
        self.day_check.setText(f"VS BACKTEST {text}" if text else "")
        self.day_check.setVisible(bool(text))

    def set_transactions_error(self, text: str) -> None:
        """Say why the history could not be loaded."""
        self.table_note.setText(f"Cannot load transactions: {text}")

    # -- stopping --------------------------------------------------------------------------------

    def show_info(self) -> None:
        """Back to the figures page."""
        self.pages.setCurrentIndex(0)
        self.stop_button.setEnabled(True)

    def show_stop_choice(self) -> None:
        """Ask what happens to the shares, spelling out each consequence."""
        snap = self._snapshot
        if snap is None:
            return
        self.pages.setCurrentIndex(1)
        self.stop_button.setEnabled(False)
        held = snap.shares
        self.choice_text.setText(f"Stop #{snap.instance_id} “{snap.title}”? It will place no further orders.")
        if held > 0:
            price = f" (about {format_money(snap.price * held)} at {format_money(snap.price)})" if snap.price else ""
            self.sell_button.setText(f"SELL {held:,} {snap.ticker} AND STOP")
            self.sell_note.setText(f"Sends a market order for all {held:,} shares now{price}. The fill is "
                                   "recorded on this card and its P&L becomes final. If the market is closed "
                                   "the engine says so and nothing is sold.")
            self.keep_button.setText("KEEP THE SHARES AND STOP")
            self.keep_note.setText(f"The {held:,} shares stay in the brokerage account, no longer managed by any "
                                   "card: their value keeps moving and you sell them yourself.")
            self.sell_button.show()
            self.sell_note.show()
        else:
            self.sell_button.hide()
            self.sell_note.hide()
            self.keep_button.setText("STOP THIS CARD")
            self.keep_note.setText(f"The card holds no shares; its {format_money(snap.uninvested)} is released "
                                   "for new cards.")

    def _choose(self, liquidate: bool) -> None:
        if self._snapshot is not None:
            self.stop_chosen.emit(self._snapshot.instance_id, liquidate)

    def close_view(self) -> None:
        """Close and forget the instance."""
        self.hide()
        self._snapshot = None
        self.closed.emit()

    def consequence_texts(self) -> tuple[str, str]:
        """The sell and keep explanations on the stop page."""
        return self.sell_note.text(), self.keep_note.text()

