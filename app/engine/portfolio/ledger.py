"""Each card's running totals, kept in memory; its fills read from system.db only when asked, a page at a time.

Every minute the cycle, the cards, the available cash and the algorithms ask for a card's position.
The ledger keeps Σ shares, Σ invested and the fill count per card (one aggregate query at start,
then only the rows recorded since its last look), plus the card's fills of its latest trading day
(what a card shows and the day-trade rule reads). A card's whole history is a lazy sequence that
reads pages on demand, so memory and start-up do not grow with months of fills, and a stopped
card's fills are never read unless someone asks for them.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, overload

from app.engine.portfolio.money import ZERO, CardFigures, Position, figures_from_position, to_decimal
from app.storage.records import TransactionRecord
from app.storage.system_store import SystemStore

PAGE = 256  # fills per page read from system.db
KEEP_PAGES = 2  # pages a history keeps between reads (an algorithm walking it once, then its tail)


CHECKPOINT_KEY = "ledger_checkpoint"  # system_config: every card's totals up to one transaction id
log = logging.getLogger("autotrader.engine.ledger")


def _row_key(tx: TransactionRecord) -> list[Any]:
    # What identifies a recorded row beyond its id (a restored file can reuse ids).
    return [tx.algorithm_id, tx.type, tx.shares, tx.price, tx.timestamp, tx.client_order_id]


def _order_key(tx: TransactionRecord) -> tuple[str, int]:
    # The order get_transactions(oldest_first=True) uses.
    return tx.timestamp, tx.id


MILLION = Decimal(1_000_000)


def sign_of(side: str) -> int:
    """+1 for a buy, −1 for a sell: how a fill moves shares and invested money."""
    return 1 if side == "buy" else -1


def _day_start(timestamp: str) -> str:
    # UTC text sorts as time; a trading session never crosses midnight UTC.
    return timestamp[:10] + "T00:00:00Z"


class FillHistory(Sequence[TransactionRecord]):
    """One card's fills, oldest first, as they were when its holding was taken (a read-only snapshot).

    The fills of the latest day come from memory; earlier ones are read from system.db a page at a
    time when indexed, sliced or iterated, and only a few pages are kept.
    """

    def __init__(self, count: int, upto_id: int, tail: Callable[[], tuple[TransactionRecord, ...]],
                 page: Callable[[int, int, int], list[TransactionRecord]]):
        self._count = count
        self._upto = upto_id
        self._tail_fn = tail
        self._tail: tuple[TransactionRecord, ...] | None = None
        self._page_fn = page
        self._pages: OrderedDict[int, list[TransactionRecord]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def _recent(self) -> tuple[TransactionRecord, ...]:
        if self._tail is None:
            # The ledger's latest-day fills, minus any recorded after this snapshot.
            tail = tuple(tx for tx in self._tail_fn() if tx.id <= self._upto)
            self._tail = tail if len(tail) <= self._count else tail[-self._count:]
        return self._tail

    def _page(self, number: int) -> list[TransactionRecord]:
        with self._lock:
            rows = self._pages.get(number)
            if rows is not None:
                self._pages.move_to_end(number)
                return rows
        rows = self._page_fn(number * PAGE, PAGE, self._upto)
        with self._lock:
            self._pages[number] = rows
            while len(self._pages) > KEEP_PAGES:
                self._pages.popitem(last=False)
        return rows

    def _at(self, index: int) -> TransactionRecord:
        recent = self._recent()
        head = self._count - len(recent)
        if index >= head:
            return recent[index - head]
        rows = self._page(index // PAGE)
        return rows[index % PAGE]

    @overload
    def __getitem__(self, index: int) -> TransactionRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[TransactionRecord]: ...

    def __getitem__(self, index: int | slice) -> TransactionRecord | list[TransactionRecord]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            if step != 1 or start >= stop:
                return [self._at(i) for i in range(start, stop, step)]
            return self._range(start, stop)
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("fill index out of range")
        return self._at(index)

    def _range(self, start: int, stop: int) -> list[TransactionRecord]:
        # One read for the part before the latest day (an algorithm replaying its whole history
        # after a restart must not pay a query per page), the rest from memory.
        recent = self._recent()
        head = self._count - len(recent)
        rows = self._page_fn(start, min(stop, head) - start, self._upto) if start < head else []
        return rows + list(recent[max(start, head) - head:stop - head])

    def __iter__(self) -> Iterator[TransactionRecord]:
        recent = self._recent()
        head = self._count - len(recent)
        for number in range((head + PAGE - 1) // PAGE):  # kept pages: a loop stopping early reads one
            yield from self._page(number)[:head - number * PAGE]
        yield from recent

    def __reversed__(self) -> Iterator[TransactionRecord]:
        for i in range(self._count - 1, -1, -1):
            yield self._at(i)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == self._count and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FillHistory({self._count} fills)"


def _empty_tail() -> tuple[TransactionRecord, ...]:
    return ()


def _no_page(offset: int, limit: int, upto: int) -> list[TransactionRecord]:
    return []


@dataclass(frozen=True)
class Holding:
    """One card's totals and its fills (oldest first, read lazily)."""

    transactions: Sequence[TransactionRecord] = ()
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


class _Card(Position):
    __slots__ = ("tail_start", "tail", "snapshot")

    def __init__(self) -> None:
        super().__init__()
        self.tail_start: str | None = None  # the tail holds every fill at or after this; None: not read
        self.tail: list[TransactionRecord] = []
        self.snapshot: Holding | None = None

    def add(self, tx: TransactionRecord) -> None:
        self.book(tx.type, tx.shares, to_decimal(tx.price, "transaction price"))
        self.snapshot = None
        if self.tail_start is None:
            return  # read from the file when first asked for, this fill included
        day = _day_start(tx.timestamp)
        if day > self.tail_start:
            self.tail_start = day
            self.tail = [f for f in self.tail if f.timestamp >= day]
        if tx.timestamp >= self.tail_start:
            # A fill reconciled after a restart can carry an earlier time than one already seen.
            bisect.insort(self.tail, tx, key=_order_key)


class CardLedger:
    """Per-card holdings over one system.db, shared by the engine thread and the algorithm workers.

    Callers pass their own thread's ``SystemStore`` for the look at new rows; fills are paged in
    through the reader given to ``read_with`` (the algorithm context's pool), from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cards: dict[int, _Card] = {}
        self._last: TransactionRecord | None = None  # the newest transaction taken in
        self._started = False
        self._path: Path | None = None
        self._read_with: Callable[[], AbstractContextManager[SystemStore]] | None = None

    def read_with(self, reader: Callable[[], AbstractContextManager[SystemStore]]) -> None:
        """Read fills through ``reader`` (a context giving a store usable on the calling thread,
        e.g. a connection pool); without one, each read opens its own short-lived connection."""
        self._read_with = reader

    @contextmanager
    def _reader(self) -> Iterator[SystemStore]:
        if self._read_with is not None:
            with self._read_with() as store:
                yield store
            return
        assert self._path is not None
        with SystemStore(self._path, shared=True) as store:
            yield store

    def _load(self, system: SystemStore) -> None:
        # From the last checkpoint (if it still matches the file), then one aggregate pass over the
        # rows after it. Σ cost comes back in integer millionths of a dollar (exact for prices of
        # up to six decimals); a card with a finer price is summed per exact price, times the price
        # in Decimal: the same Σ as adding fill by fill.
        upto = system.newest_transaction_id()
        cards, base = self._from_checkpoint(system, upto)
        for algo_id, count, shares, micro, finer in system.fill_totals(upto, base):
            card = cards.setdefault(algo_id, _Card())
            card.count += count
            card.shares += shares
            if finer:
                card.invested += sum((sign_of(side) * total * to_decimal(price, "transaction price")
                                      for side, price, total in system.fill_sums_by_price(algo_id, upto, base)),
                                     ZERO)
            else:
                card.invested += Decimal(micro) / MILLION
        self._cards = cards
        self._last = system.transaction(upto) if upto else None
        self._started = True

    @staticmethod
    def _from_checkpoint(system: SystemStore, upto: int) -> tuple[dict[int, _Card], int]:
        """The totals a checkpoint recorded and the id they run to; nothing (0) unless the file still
        holds exactly the rows it summed: the same last row, and as many rows up to it."""
        raw = system.get_config(CHECKPOINT_KEY)
        if not raw:
            return {}, 0
        try:
            point = json.loads(raw)
            base, count, last = int(point["upto"]), int(point["count"]), point["last"]
            row = system.transaction(base) if 0 < base <= upto else None
            if row is None or _row_key(row) != last or system.count_transactions(base) != count:
                log.info("ledger checkpoint does not match system.db; summing every fill")
                return {}, 0
            cards: dict[int, _Card] = {}
            for key, (n, shares, invested) in point["cards"].items():
                card = cards[int(key)] = _Card()
                card.count, card.shares, card.invested = int(n), int(shares), Decimal(invested)
            return cards, base
        except (ValueError, TypeError, KeyError, ArithmeticError):
            log.warning("ledger checkpoint unreadable; summing every fill")
            return {}, 0

    def checkpoint(self, system: SystemStore) -> None:
        """Record every card's totals in system.db (``system_config``), so that the next start sums
        only the fills recorded after it. Written by the engine between cycles."""
        self.refresh(system)
        with self._lock:
            if self._last is None:
                return
            point = {"upto": self._last.id, "count": sum(card.count for card in self._cards.values()),
                     "last": _row_key(self._last),
                     "cards": {str(i): [c.count, c.shares, str(c.invested)] for i, c in self._cards.items()}}
        system.set_config(CHECKPOINT_KEY, json.dumps(point, separators=(",", ":")))

    def refresh(self, system: SystemStore) -> None:
        """Take in the transactions recorded since the last refresh."""
        with self._lock:
            if self._path is None:
                self._path = Path(system.path)
            if not self._started:
                self._load(system)
                return
            if self._last is None:
                fresh = system.transactions_after(0)
            else:
                # Re-read the newest row already taken in, too: if the file was replaced (a
                # restore) it is gone or different, and the ledger starts over from the file.
                fresh = system.transactions_after(self._last.id - 1)
                if not fresh or fresh[0] != self._last:
                    self._load(system)
                    return
                fresh = fresh[1:]
            for tx in fresh:
                self._cards.setdefault(tx.algorithm_id, _Card()).add(tx)
                self._last = tx

    def _tail(self, algo_id: int) -> tuple[TransactionRecord, ...]:
        """The card's fills of its latest day, read once and then kept up to date."""
        while True:
            with self._lock:
                card = self._cards.get(algo_id)
                if card is None:
                    return ()
                if card.tail_start is not None or not card.count:
                    return tuple(card.tail)
                upto = self._last.id if self._last else 0
            # Read outside the lock: other cards' algorithms go on meanwhile.
            with self._reader() as store:
                start = _day_start(store.newest_fill_time(algo_id, upto) or "")
                tail = store.transactions_since(algo_id, start, upto)
            with self._lock:
                if (self._last.id if self._last else 0) != upto or self._cards.get(algo_id) is not card:
                    continue  # fills came in meanwhile (not kept while the tail was unread): read again
                if card.tail_start is None:
                    card.tail, card.tail_start = tail, start
                return tuple(card.tail)

    def _pager(self, algo_id: int) -> Callable[[int, int, int], list[TransactionRecord]]:
        def page(offset: int, limit: int, upto: int) -> list[TransactionRecord]:
            with self._reader() as store:
                return store.transactions_page(algo_id, offset, limit, upto)
        return page

    # --- holdings --------------------------------------------------------------------------

    def _holding(self, algo_id: int) -> Holding:
        card = self._cards.get(algo_id)
        if card is None or not card.count:
            return NO_HOLDING
        if card.snapshot is None:
            upto = self._last.id if self._last else 0
            history = FillHistory(card.count, upto, lambda: self._tail(algo_id), self._pager(algo_id))
            card.snapshot = Holding(history, card.shares, card.invested)
        return card.snapshot

    def holding(self, system: SystemStore, algo_id: int) -> Holding:
        """Card ``algo_id``'s totals and fills as recorded now."""
        return self.holdings(system, (algo_id,))[algo_id]

    def holdings(self, system: SystemStore, algo_ids: Iterable[int]) -> dict[int, Holding]:
        """Several cards' totals and fills after one refresh (one query for a whole card list)."""
        self.refresh(system)
        return self.held(algo_ids)

    def held(self, algo_ids: Iterable[int]) -> dict[int, Holding]:
        """Cards' totals and fills as of the last refresh, without looking at the file: for the many
        reads of one minute after its one refresh (nothing is recorded while a minute's calls run)."""
        with self._lock:
            return {i: self._holding(i) for i in algo_ids}

    @property
    def started(self) -> bool:
        """Whether the first refresh (the totals' load) has happened."""
        return self._started
