"""The horizontally scrolling row of cards, with the "add" tile at its end.

Cards are kept by instance id and updated in place; a card is only created for a new instance and
only removed when its instance is gone, so a cards_changed burst costs label updates, not widgets.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QScrollArea, QWidget

from app.engine.events import CardSnapshot
from app.ui import theme
from app.ui.card import Card
from app.ui.widgets import button, enable_kinetic_scrolling


class CardStrip(QScrollArea):
    """One :class:`Card` per snapshot, in the engine's order, then an add tile."""

    card_tapped = Signal(int)
    add_requested = Signal()

    def __init__(self, metrics: theme.Metrics, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._metrics = metrics
        self._cards: dict[int, Card] = {}
        self._order: list[int] = []
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self._content = QWidget()
        self._content.setObjectName("cardStripContent")
        self._row = QHBoxLayout(self._content)
        self.add_tile: QPushButton = button("+\nADD\nALGORITHM", kind="add")
        self.add_tile.setObjectName("addTile")
        self.add_tile.clicked.connect(self.add_requested)
        self._row.addWidget(self.add_tile)
        self._row.addStretch(1)
        self.setWidget(self._content)
        enable_kinetic_scrolling(self.viewport(), horizontal=True)
        self.apply_metrics(metrics)

    @property
    def cards(self) -> dict[int, Card]:
        """Card widgets by instance id (read-only use)."""
        return self._cards

    def card(self, instance_id: int) -> Card | None:
        """The card of ``instance_id``, if shown."""
        return self._cards.get(instance_id)

    def apply_metrics(self, metrics: theme.Metrics) -> None:
        """Resize cards and spacing for a new window size."""
        self._metrics = metrics
        self._row.setContentsMargins(metrics.pad_px, metrics.pad_px, metrics.pad_px, metrics.pad_px)
        self._row.setSpacing(metrics.pad_px)
        self.add_tile.setFixedWidth(max(theme.MIN_TOUCH_PX * 2, metrics.card_width // 2))
        self.add_tile.setSizePolicy(self.add_tile.sizePolicy().horizontalPolicy(),
                                    self.add_tile.sizePolicy().Policy.Expanding)
        for card in self._cards.values():
            card.apply_metrics(metrics)

    def set_cards(self, snapshots: Iterable[CardSnapshot]) -> None:
        """Show exactly ``snapshots``: update existing cards in place, add new ones, drop vanished ones."""
        snapshots = tuple(snapshots)
        order = [s.instance_id for s in snapshots]
        for snap in snapshots:
            card = self._cards.get(snap.instance_id)
            if card is None:
                card = Card(snap, self._metrics, self._content)
                card.tapped.connect(self.card_tapped)
                self._cards[snap.instance_id] = card
            else:
                card.update_snapshot(snap)
        if order == self._order:
            return
        for gone in set(self._cards) - set(order):
            card = self._cards.pop(gone)
            self._row.removeWidget(card)
            card.hide()
            card.deleteLater()
        # Re-insert in the engine's order; existing widgets are moved, never rebuilt.
        for index, instance_id in enumerate(order):
            card = self._cards[instance_id]
            self._row.removeWidget(card)
            self._row.insertWidget(index, card)
            card.show()
        self._order = order
