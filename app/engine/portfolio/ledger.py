"""Each card's fills and running totals, kept in memory and read from system.db incrementally.

Every minute the cycle, the cards, the available cash and the algorithms ask for a card's position.
Re-reading and re-summing all of a card's transactions for each of those made a minute cost grow
with the card's history; the ledger instead reads only the rows recorded since its last look (one
primary-key query) and keeps Σ shares and Σ invested per card, so the cost stays flat for months.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

from app.engine.portfolio.money import ZERO, CardFigures, figures_from_position, to_decimal
from app.storage.records import TransactionRecord
from app.storage.system_store import SystemStore


def _order_key(tx: TransactionRecord) -> tuple[str, int]:
    # The order get_transactions(oldest_first=True) uses.
    return tx.timestamp, tx.id


@dataclass(frozen=True)
class Holding:
    """One card's fills (oldest first) and what they add up to."""

    transactions: tuple[TransactionRecord, ...] = ()
    shares: int = 0
    invested: Decimal = ZERO  # Σ buy cost − Σ sell proceeds

    @property
    def trade_count(self) -> int:
        """How many fills the card has."""
        return len(self.transactions)

    def figures(self, initial_capital: Any, price: Any | None) -> CardFigures:
        """The card's figures at ``price`` (None: no price yet), as ``card_figures`` would sum them."""
        return figures_from_position(initial_capital, self.shares, self.invested, self.trade_count, price)


NO_HOLDING = Holding()


@dataclass
class _Card:
    fills: list[TransactionRecord] = field(default_factory=list)
    shares: int = 0
    invested: Decimal = ZERO
    snapshot: Holding | None = None

    def add(self, tx: TransactionRecord) -> None:
        cost = tx.shares * to_decimal(tx.price, "transaction price")
        if tx.type == "buy":
            self.shares += tx.shares
            self.invested += cost
        else:
            self.shares -= tx.shares
            self.invested -= cost
        if self.fills and _order_key(tx) < _order_key(self.fills[-1]):
            # A fill reconciled after a restart can carry an earlier fill time than one already seen.
            bisect.insort(self.fills, tx, key=_order_key)
        else:
            self.fills.append(tx)
        self.snapshot = None

    def holding(self) -> Holding:
        if self.snapshot is None:
            self.snapshot = Holding(tuple(self.fills), self.shares, self.invested)
        return self.snapshot


class CardLedger:
    """Per-card holdings over one system.db, shared by the engine thread and the algorithm workers.

    Callers pass their own thread's ``SystemStore``; the ledger only reads through it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cards: dict[int, _Card] = {}
        self._last: TransactionRecord | None = None  # the newest transaction taken in

    def refresh(self, system: SystemStore) -> None:
        """Take in the transactions recorded since the last refresh."""
        with self._lock:
            if self._last is None:
                fresh = system.transactions_after(0)
            else:
                # Re-read the newest row already taken in, too: if the file was replaced (a
                # restore) it is gone or different, and the ledger starts over from the file.
                fresh = system.transactions_after(self._last.id - 1)
                if not fresh or fresh[0] != self._last:
                    self._cards.clear()
                    self._last = None
                    fresh = system.transactions_after(0)
                else:
                    fresh = fresh[1:]
            for tx in fresh:
                self._cards.setdefault(tx.algorithm_id, _Card()).add(tx)
                self._last = tx

    def holding(self, system: SystemStore, algo_id: int) -> Holding:
        """Card ``algo_id``'s fills and totals as recorded now."""
        return self.holdings(system, (algo_id,))[algo_id]

    def holdings(self, system: SystemStore, algo_ids: Iterable[int]) -> dict[int, Holding]:
        """Several cards' fills and totals after one refresh (one query for a whole card list)."""
        self.refresh(system)
        with self._lock:
            return {i: (self._cards[i].holding() if i in self._cards else NO_HOLDING) for i in algo_ids}
