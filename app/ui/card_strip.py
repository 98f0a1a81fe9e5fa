"""The horizontally scrolling row of cards, with the "add" tile at its end.

Cards are kept by instance id and updated in place; a card is only created for a new instance and
only removed when its instance is gone, so a cards_changed burst costs label updates, not widgets.
The engine sends only the cards that changed (``CardsUpdate``); ``apply`` touches only their widgets,
a slice at a time, so that a thousand changed cards never hold the UI loop for more than a frame.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QScrollArea, QWidget

from app.engine.events import CardSnapshot, CardsUpdate
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
        self._order: list[int] = []  # the order the layout shows
        self._wanted: list[int] = []  # the order the engine sent last
        self._pending: dict[int, CardSnapshot] = {}  # changed cards not shown yet (the newest of each)
        self._drain_timer = QTimer(self)
        self._drain_timer.setSingleShot(True)
        self._drain_timer.timeout.connect(self._drain)
        self.rebuilt = 0  # card widgets created or updated with a changed snapshot (for tests)
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

    SLICE_S = 0.004  # card updates per UI loop turn: well inside a 16 ms frame with its repaint

    @property
    def pending(self) -> int:
        """Changed cards still waiting for their turn on the UI loop."""
        return len(self._pending)

    def set_cards(self, snapshots: Iterable[CardSnapshot]) -> None:
        """Show exactly ``snapshots`` now: update existing cards in place, add new ones, drop vanished ones."""
        self.apply(CardsUpdate.full(tuple(snapshots)))
        self.flush()

    def apply(self, update: CardsUpdate) -> None:
        """Show the cards after ``update``: vanished cards go now; changed ones are updated (or made)
        a slice at a time, the first slice now and the rest on the next loop turns."""
        self._wanted = list(update.order)
        for snap in update.changed:
            self._pending[snap.instance_id] = snap
        wanted = set(self._wanted)
        for gone in [i for i in self._pending if i not in wanted]:
            del self._pending[gone]
        for gone in [i for i in self._cards if i not in wanted]:
            card = self._cards.pop(gone)
            self._row.removeWidget(card)
            card.hide()
            card.deleteLater()
        if len(self._order) != len(self._cards):
            self._order = [i for i in self._order if i in self._cards]
        self._drain()

    def flush(self) -> None:
        """Apply every pending card now."""
        self._drain(budget_s=None)

    def _drain(self, budget_s: float | None = SLICE_S) -> None:
        until = None if budget_s is None else time.perf_counter() + budget_s
        while self._pending:
            instance_id = next(iter(self._pending))
            snap = self._pending.pop(instance_id)
            card = self._cards.get(instance_id)
            if card is None:
                card = Card(snap, self._metrics, self._content)
                card.tapped.connect(self.card_tapped)
                self._cards[instance_id] = card
                self.rebuilt += 1
            elif card.snapshot != snap:
                card.update_snapshot(snap)
                self.rebuilt += 1
            if until is not None and self._pending and time.perf_counter() >= until:
                self._drain_timer.start(0)
                return
        self._drain_timer.stop()
        self._place()

    def _place(self) -> None:
        """Lay the cards out in the engine's order (existing widgets are moved, never rebuilt)."""
        order = [i for i in self._wanted if i in self._cards]
        if order == self._order:
            return
        for index, instance_id in enumerate(order):
            card = self._cards[instance_id]
            self._row.removeWidget(card)
            self._row.insertWidget(index, card)
            card.show()
        self._order = order
