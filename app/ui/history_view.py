"""History: the cards that no longer trade, with what each of them made."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QTableWidgetItem, QVBoxLayout, QWidget

from app.engine.events import StoppedCard
from app.engine.portfolio.money import format_money
from app.ui import theme
from app.ui.card import STATE_COLORS, pnl_state
from app.ui.overlay import Overlay
from app.ui.widgets import ElidedLabel, button, enable_kinetic_scrolling, label, local_time, read_only_table

COLUMNS = ("CARD", "STOPPED", "TRADES", "REALISED P&L")


def history_row(card: StoppedCard) -> tuple[str, str, str, str]:
    """A stopped card as table text: title with its id, when it stopped, fills, realised P&L."""
    kept = f" · kept {card.shares_kept:,} sh" if card.shares_kept else ""
    return (f"#{card.instance_id} {card.title}{kept}", local_time(card.stopped_at, "%d %b %Y"),
            f"{card.trade_count:,}", format_money(card.realised_pnl, signed=True))


class HistoryView(Overlay):
    """A table of stopped cards, the most recently stopped first, and their realised P&L in total."""

    def __init__(self, parent: QWidget, metrics: theme.Metrics) -> None:
        super().__init__(parent, metrics)
        self.setObjectName("historyView")
        self.title = label("HISTORY · stopped cards", size="large")
        self.total = ElidedLabel(size="large", align=Qt.AlignmentFlag.AlignRight)
        self.close_button = button("CLOSE")
        self.close_button.setObjectName("historyClose")
        self.close_button.clicked.connect(self.close_overlay)
        self.table = read_only_table(COLUMNS)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        enable_kinetic_scrolling(self.table.viewport(), horizontal=False)
        self.note = label("Loading…", size="small", dim=True, wrap=True)

        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addWidget(self.total, 1)
        top.addWidget(self.close_button)
        self.body_layout = layout = QVBoxLayout(self.body)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        self.apply_metrics(metrics)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Margins and row heights for a new window size."""
        super().apply_metrics(metrics)
        self.body_layout.setContentsMargins(metrics.pad_px, metrics.pad_px, metrics.pad_px, metrics.pad_px)
        self.table.verticalHeader().setDefaultSectionSize(max(28, round(metrics.small_px * 2.4)))

    def open_loading(self) -> None:
        """Open with an empty table while the engine answers."""
        self.table.setRowCount(0)
        self.total.setText("")
        self.note.setText("Loading…")
        self.open_overlay()

    def set_cards(self, cards: Sequence[StoppedCard]) -> None:
        """Fill the table and the total."""
        self.table.setRowCount(len(cards))
        for r, card in enumerate(cards):
            for c, text in enumerate(history_row(card)):
                item = QTableWidgetItem(text)
                align = Qt.AlignmentFlag.AlignLeft if c == 0 else Qt.AlignmentFlag.AlignRight
                item.setTextAlignment(align | Qt.AlignmentFlag.AlignVCenter)
                if c == 3:
                    item.setForeground(STATE_COLORS[pnl_state(card.realised_pnl)])
                self.table.setItem(r, c, item)
        total = sum((c.realised_pnl for c in cards), Decimal(0))
        self.total.setText(f"REALISED {format_money(total, signed=True)}")
        self.total.set_color(STATE_COLORS[pnl_state(total)])
        kept = sum(1 for c in cards if c.shares_kept)
        self.note.setText("No card has been stopped yet." if not cards else
                          f"{len(cards)} stopped card(s). " + (
                              f"{kept} kept its shares when it stopped: their later gains or losses are "
                              "not on any card." if kept else "None held shares when it stopped: their P&L is final."))

    def set_error(self, text: str) -> None:
        """Say why the history could not be loaded."""
        self.note.setText(f"Cannot load the history: {text}")
