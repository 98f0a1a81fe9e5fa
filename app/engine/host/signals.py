"""The engine's signals and the one publisher that emits them.

Everything the engine thread tells the kiosk leaves through :class:`QtPublisher`: the service's
card, market, stream, account and notice updates, and the orchestrator's bars, cycle reports and
symbol set. Each signal carries a frozen dataclass (or a tuple of them / a frozenset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.engine.events import (AccountSummary, CardSnapshot, CardsUpdate, CycleReport, MarketStatus, Notice,
                               StreamStatus)

if TYPE_CHECKING:
    from app.engine.host.alerts import AlertWatch


class EngineSignals(QObject):
    """Signals from the engine thread; each carries a frozen dataclass (or a tuple of them)."""

    cards_changed = Signal(object)  # CardsUpdate: the cards that changed, and the order of all
    market_changed = Signal(object)
    stream_changed = Signal(object)
    account_changed = Signal(object)
    notice = Signal(object)
    symbols_changed = Signal(object)  # frozenset[str]: the symbols the live stream must carry
    cycle_done = Signal(object)  # CycleReport
    bars_arrived = Signal(object)  # tuple[(symbol, Bar), ...]


class QtPublisher:
    """The EngineService publisher, and the orchestrator's: emits the engine signals."""

    def __init__(self, signals: EngineSignals):
        self._s = signals
        self.watch: AlertWatch | None = None  # once alerts are configured: sees cards, account and notices
        self._sent: dict[int, CardSnapshot] = {}  # the last snapshot sent of each card
        self._order: tuple[int, ...] | None = None

    def cards(self, cards: tuple[CardSnapshot, ...]) -> None:
        """The running cards: sends a ``CardsUpdate`` with only those that differ from the last ones
        sent (nothing at all when no card changed and none came or went)."""
        sent = self._sent
        changed = tuple(card for card in cards if sent.get(card.instance_id) != card)
        order = tuple(card.instance_id for card in cards)
        if not changed and order == self._order:
            return
        self._sent = {card.instance_id: card for card in cards}
        self._order = order
        self._s.cards_changed.emit(CardsUpdate(changed, order))
        if self.watch is not None and changed:
            self.watch.on_cards(changed)

    def resend_cards(self) -> None:
        """Forget what was sent: the next ``cards`` sends every card (a view connecting late)."""
        self._sent, self._order = {}, None

    def market(self, status: MarketStatus) -> None:
        """Market open/closed and the next open and close."""
        self._s.market_changed.emit(status)

    def stream(self, status: StreamStatus) -> None:
        """The live bar stream's state."""
        self._s.stream_changed.emit(status)

    def account(self, summary: AccountSummary) -> None:
        """Header figures."""
        self._s.account_changed.emit(summary)
        if self.watch is not None:
            self.watch.on_account(summary)

    def notice(self, notice: Notice) -> None:
        """A line for the notice bar."""
        self._s.notice.emit(notice)
        if self.watch is not None:
            self.watch.on_notice(notice)

    def bars(self, bars: tuple) -> None:
        """Bars that arrived this minute: ``((symbol, Bar), ...)``."""
        self._s.bars_arrived.emit(bars)

    def cycle_done(self, report: CycleReport) -> None:
        """A minute's cycle finished."""
        self._s.cycle_done.emit(report)

    def symbols(self, symbols: frozenset[str]) -> None:
        """The symbols the live stream must carry."""
        self._s.symbols_changed.emit(symbols)
