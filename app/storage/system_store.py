"""system.db: algorithm instances (cards), their transactions, the orders journal and config.

The seed schema with its CHECK and FOREIGN KEY constraints, plus the orders journal. Cards are
only ever soft-stopped, nothing is deleted, and positions/P&L are never stored: they are derived
from transactions. Timestamps are UTC text ``YYYY-MM-DDTHH:MM:SSZ``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from app.storage.records import InstanceRecord, NetOrderRecord, OrderRecord, TransactionRecord
from app.storage.sqlite import SqliteStore, transaction
from app.storage.timefmt import parse_utc_text, utc_text


class StoreError(ValueError):
    """Input a store refuses, with a sentence saying why. Nothing was written."""


ORDER_STATUSES = ("pending", "submitted", "filled", "partial", "rejected", "canceled", "failed")
OPEN_ORDER_STATUSES = ("pending", "submitted")
FINAL_ORDER_STATUSES = ("filled", "partial", "rejected", "canceled", "failed")
INSTANCE_STATUSES = ("running", "stopped")
SIDES = ("buy", "sell")

_TICKER = re.compile(r"[A-Z][A-Z0-9.]{0,9}")
_ALGO_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_CLIENT_ORDER_ID = 128  # Alpaca's limit


def _migration_1_seed(conn: sqlite3.Connection) -> None:
    # The seed's tables verbatim (IF NOT EXISTS: a seed-built system.db upgrades in place),
    # except the plaintext PIN row, which the PIN guard replaces with a salted hash.
    conn.execute("""CREATE TABLE IF NOT EXISTS algorithm_instances (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        display_name TEXT NOT NULL,
        algorithm_type TEXT NOT NULL,
        ticker TEXT NOT NULL,
        initial_capital REAL NOT NULL CHECK(initial_capital > 0),
        status TEXT NOT NULL DEFAULT 'running' CHECK(status IN ('running', 'stopped')),
        created_at TEXT NOT NULL,
        stopped_at TEXT
    )""")
    conn.execute("""CREATE TABLE IF NOT EXISTS transactions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        algorithm_id INTEGER NOT NULL,
        type TEXT NOT NULL CHECK(type IN ('buy', 'sell')),
        shares INTEGER NOT NULL CHECK(shares > 0),
        price REAL NOT NULL CHECK(price > 0),
        timestamp TEXT NOT NULL,
        FOREIGN KEY (algorithm_id) REFERENCES algorithm_instances(id)
    )""")
    conn.execute("""CREATE TABLE IF NOT EXISTS system_config (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""")


def _migration_2_journal(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE algorithm_instances ADD COLUMN params_json TEXT NOT NULL DEFAULT '{}'")
    conn.execute("ALTER TABLE algorithm_instances ADD COLUMN faulted_reason TEXT")
    # ALTER TABLE cannot add a UNIQUE column; a unique index is the same constraint
    # (NULLs stay distinct, so manual records without an order id are unaffected).
    conn.execute("ALTER TABLE transactions ADD COLUMN client_order_id TEXT")
    conn.execute("CREATE UNIQUE INDEX transactions_client_order_id ON transactions(client_order_id)")
    conn.execute("CREATE INDEX transactions_algo_time ON transactions(algorithm_id, timestamp)")
    conn.execute("""CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        algorithm_id INTEGER NOT NULL REFERENCES algorithm_instances(id),
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK(side IN ('buy', 'sell')),
        shares INTEGER NOT NULL CHECK(shares > 0),
        status TEXT NOT NULL CHECK(status IN
            ('pending', 'submitted', 'filled', 'partial', 'rejected', 'canceled', 'failed')),
        submitted_at TEXT NOT NULL,
        broker_order_id TEXT,
        filled_qty INTEGER NOT NULL DEFAULT 0 CHECK(filled_qty >= 0),
        filled_avg_price REAL,
        filled_at TEXT,
        error TEXT
    )""")
    conn.execute("CREATE INDEX orders_status ON orders(status)")
    conn.execute("CREATE INDEX orders_algorithm ON orders(algorithm_id)")


def _migration_3_net_orders(conn: sqlite3.Connection) -> None:
    # One broker order per (minute, symbol) for the cards' netted orders; each card's share stays a
    # row of `orders` (its own client order id, its own transaction) pointing at its parent.
    conn.execute("""CREATE TABLE net_orders (
        client_order_id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        side TEXT CHECK(side IN ('buy', 'sell')),
        shares INTEGER NOT NULL CHECK(shares >= 0),
        status TEXT NOT NULL CHECK(status IN
            ('pending', 'submitted', 'filled', 'partial', 'rejected', 'canceled', 'failed')),
        submitted_at TEXT NOT NULL,
        cross_price REAL CHECK(cross_price IS NULL OR cross_price > 0),  -- NULL: unknown (rows rebuilt)
        broker_order_id TEXT,
        filled_qty INTEGER NOT NULL DEFAULT 0 CHECK(filled_qty >= 0 AND filled_qty <= shares),
        filled_avg_price REAL,
        filled_at TEXT,
        error TEXT,
        CHECK ((side IS NULL) = (shares = 0))
    )""")
    conn.execute("CREATE INDEX net_orders_status ON net_orders(status)")
    conn.execute("ALTER TABLE orders ADD COLUMN parent_id TEXT REFERENCES net_orders(client_order_id)")
    conn.execute("CREATE INDEX orders_parent ON orders(parent_id) WHERE parent_id IS NOT NULL")


MIGRATIONS = (_migration_1_seed, _migration_2_journal, _migration_3_net_orders)

# A plain order to journal: (client order id, card, symbol, side, shares).
JournalRow = tuple[str, int, str, str, int]
# A netted order to journal: (parent id, symbol, side or None, shares, cross price or None if unknown,
# ((child id, card, side, shares), ...)).
NetJournalRow = tuple[str, str, "str | None", int, "float | None", tuple[tuple[str, int, str, int], ...]]

_INSTANCE_COLUMNS = ("id, display_name, algorithm_type, ticker, initial_capital, status, "
                     "created_at, stopped_at, params_json, faulted_reason")
_TRANSACTION_COLUMNS = "id, algorithm_id, type, shares, price, timestamp, client_order_id"
_ORDER_COLUMNS = ("client_order_id, algorithm_id, symbol, side, shares, status, submitted_at, "
                  "broker_order_id, filled_qty, filled_avg_price, filled_at, error, parent_id")
_NET_COLUMNS = ("client_order_id, symbol, side, shares, status, submitted_at, cross_price, broker_order_id, "
                "filled_qty, filled_avg_price, filled_at, error")


# -- validation (cheap checks before SQL, so errors read as sentences) ---------------------------

def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise StoreError(f"{what} must be a whole number above 0, got {value!r}")
    return value


def _positive_money(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise StoreError(f"{what} must be a positive amount, got {value!r}")
    return float(value)


def _ticker(value: object) -> str:
    if not isinstance(value, str) or _TICKER.fullmatch(value) is None:
        raise StoreError(f"invalid ticker symbol {repr(value)[:24]}: use 1-10 capital letters, "
                         "digits or dots, starting with a letter")
    return value


def _side(value: object) -> str:
    if value not in SIDES:
        raise StoreError(f"order side must be 'buy' or 'sell', got {value!r}")
    return value


def _timestamp(value: object, what: str) -> str:
    """Normalise to ``YYYY-MM-DDTHH:MM:SSZ``; refuse anything without a time zone."""
    if not isinstance(value, str):
        raise StoreError(f"{what} must be UTC text like '2024-06-04T14:30:00Z', got {value!r}")
    try:
        return utc_text(parse_utc_text(value))
    except ValueError:
        raise StoreError(
            f"{what} must be UTC text like '2024-06-04T14:30:00Z', got {value[:40]!r}") from None


def _client_order_id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_CLIENT_ORDER_ID:
        raise StoreError(f"client order id must be 1-{MAX_CLIENT_ORDER_ID} characters of text, "
                         f"got {repr(value)[:40]}")
    return value


def _display_name(ticker: str, algo_type: str, moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime from now(): pass an aware UTC clock")
    return f"{ticker}_{algo_type}_{moment.astimezone(timezone.utc):%Y%m%d_%H%M%S}"


class SystemStore(SqliteStore):
    """Cards, transactions, the orders journal and settings in system.db. One per thread.

    ``now`` is the only source of the current time (the engine passes its Clock's ``now`` so sim
    mode stamps simulated time); it must return an aware datetime.
    """

    MIGRATIONS = MIGRATIONS
    # A journal row must be on disk before its order leaves, and a fill before the wall shows it:
    # every commit is fsynced (WAL with NORMAL lost 4 filled sells to a measured power cut).
    SYNCHRONOUS = "FULL"

    def __init__(self, path: str | Path, *, now: Callable[[], datetime] | None = None,
                 shared: bool = False, readonly: bool = False) -> None:
        self._now = now or (lambda: datetime.now(timezone.utc))
        super().__init__(path, shared=shared, readonly=readonly)


    def _now_text(self) -> str:
        return utc_text(self._now())

    # -- instances -----------------------------------------------------------------------------

    def generate_display_name(self, ticker: str, algo_type: str) -> str:
        """``TICKER_type_YYYYMMDD_HHMMSS`` from now() in UTC, e.g. ``NVDA_sma_crossover_20240604_143022``."""
        return _display_name(ticker, algo_type, self._now())

    def create_instance(self, ticker: str, algorithm_type: str, initial_capital: float,
                        params: Mapping[str, object] | None = None, *,
                        check: Callable[[], None] | None = None) -> int:
        """Add a running card and return its id. ``params`` must be JSON-serialisable.

        ``check`` runs inside the write transaction, before the insert, with the write lock held: it
        may read this store (e.g. the cash other cards hold) and raise to refuse, and no other writer
        can add a card between its reading and the insert (two racing adds cannot over-allocate).
        """
        _ticker(ticker)
        if not isinstance(algorithm_type, str) or _ALGO_TYPE.fullmatch(algorithm_type) is None:
            raise StoreError(f"algorithm type must be a Python module name, got "
                             f"{repr(algorithm_type)[:40]}")
        capital = _positive_money(initial_capital, "initial capital")
        try:
            params_json = json.dumps(dict(params or {}), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"algorithm parameters must be JSON values: {exc}") from None
        now = self._now()
        with transaction(self._conn):
            if check is not None:
                check()
            cursor = self._conn.execute(
                "INSERT INTO algorithm_instances (display_name, algorithm_type, ticker, "
                "initial_capital, status, created_at, params_json) VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (_display_name(ticker, algorithm_type, now), algorithm_type, ticker, capital, utc_text(now),
                 params_json))
        return cursor.lastrowid  # type: ignore[return-value]

    def stop_instance(self, instance_id: int) -> bool:
        """Soft-stop a card; True only if it was running (nothing is ever deleted)."""
        with transaction(self._conn):
            cursor = self._conn.execute(
                "UPDATE algorithm_instances SET status = 'stopped', stopped_at = ? "
                "WHERE id = ? AND status = 'running'", (self._now_text(), instance_id))
        return cursor.rowcount == 1

    def get_instance(self, instance_id: int) -> InstanceRecord | None:
        """One card by id, or None."""
        row = self._conn.execute(
            f"SELECT {_INSTANCE_COLUMNS} FROM algorithm_instances WHERE id = ?",
            (instance_id,)).fetchone()
        return None if row is None else InstanceRecord(*row)

    def all_instances(self, status: str | None = None) -> list[InstanceRecord]:
        """All cards, or those with ``status`` ('running' / 'stopped'), ordered by id."""
        if status is None:
            rows = self._conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM algorithm_instances ORDER BY id").fetchall()
        else:
            if status not in INSTANCE_STATUSES:
                raise StoreError(f"card status must be 'running' or 'stopped', got {status!r}")
            rows = self._conn.execute(
                f"SELECT {_INSTANCE_COLUMNS} FROM algorithm_instances WHERE status = ? ORDER BY id",
                (status,)).fetchall()
        return [InstanceRecord(*row) for row in rows]

    def set_faulted(self, instance_id: int, reason: str | None) -> None:
        """Record why the engine stopped calling a card's algorithm (None clears it)."""
        with transaction(self._conn):
            cursor = self._conn.execute(
                "UPDATE algorithm_instances SET faulted_reason = ? WHERE id = ?",
                (reason, instance_id))
            if cursor.rowcount != 1:
                raise StoreError(f"no card with id {instance_id!r}")

    # -- transactions --------------------------------------------------------------------------

    def _insert_transaction(self, algo_id: int, side: str, shares: int, price: float,
                            timestamp: str, client_order_id: str | None) -> int:
        """Insert inside the caller's transaction, after its validation."""
        if self._conn.execute("SELECT 1 FROM algorithm_instances WHERE id = ?",
                              (algo_id,)).fetchone() is None:
            raise StoreError(f"no card with id {algo_id!r}: transaction not recorded")
        try:
            cursor = self._conn.execute(
                "INSERT INTO transactions (algorithm_id, type, shares, price, timestamp, "
                "client_order_id) VALUES (?, ?, ?, ?, ?, ?)",
                (algo_id, side, shares, price, timestamp, client_order_id))
        except sqlite3.IntegrityError as exc:
            if client_order_id is not None and "client_order_id" in str(exc):
                raise StoreError(f"a transaction for order {client_order_id!r} is already "
                                 "recorded") from None
            raise
        return cursor.lastrowid  # type: ignore[return-value]

    def _record(self, algo_id: int, side: str, shares: int, price: float,
                timestamp: str | None, client_order_id: str | None) -> int:
        _positive_int(shares, "share count")
        value = _positive_money(price, "price")
        stamp = self._now_text() if timestamp is None else _timestamp(timestamp, "timestamp")
        coid = None if client_order_id is None else _client_order_id(client_order_id)
        with transaction(self._conn):
            return self._insert_transaction(algo_id, side, shares, value, stamp, coid)

    def record_buy(self, algo_id: int, shares: int, price: float, *, timestamp: str | None = None,
                   client_order_id: str | None = None) -> int:
        """Record a bought fill for a card; returns the transaction id. Timestamp defaults to now."""
        return self._record(algo_id, "buy", shares, price, timestamp, client_order_id)

    def record_sell(self, algo_id: int, shares: int, price: float, *, timestamp: str | None = None,
                    client_order_id: str | None = None) -> int:
        """Record a sold fill for a card; returns the transaction id. Timestamp defaults to now."""
        return self._record(algo_id, "sell", shares, price, timestamp, client_order_id)

    def get_transactions(self, algo_id: int, *, oldest_first: bool = False) -> list[TransactionRecord]:
        """A card's transactions, newest first (the seed's order) unless ``oldest_first``."""
        order = "ASC" if oldest_first else "DESC"
        rows = self._conn.execute(
            f"SELECT {_TRANSACTION_COLUMNS} FROM transactions WHERE algorithm_id = ? "
            f"ORDER BY timestamp {order}, id {order}", (algo_id,)).fetchall()
        return [TransactionRecord(*row) for row in rows]

    def transactions_after(self, after_id: int) -> list[TransactionRecord]:
        """Every card's transactions with ``id > after_id``, in id (that is, recording) order."""
        rows = self._conn.execute(
            f"SELECT {_TRANSACTION_COLUMNS} FROM transactions WHERE id > ? ORDER BY id", (after_id,)).fetchall()
        return [TransactionRecord(*row) for row in rows]

    def newest_transaction_id(self) -> int:
        """The highest transaction id recorded (0 when there is none)."""
        return self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM transactions").fetchone()[0]

    def transaction(self, tx_id: int) -> TransactionRecord | None:
        """One transaction by id, or None."""
        row = self._conn.execute(f"SELECT {_TRANSACTION_COLUMNS} FROM transactions WHERE id = ?", (tx_id,)).fetchone()
        return TransactionRecord(*row) if row else None

    def count_transactions(self, upto_id: int) -> int:
        """How many transactions have ``id <= upto_id``."""
        return self._conn.execute("SELECT COUNT(*) FROM transactions WHERE id <= ?", (upto_id,)).fetchone()[0]

    def fill_totals(self, upto_id: int, after_id: int = 0) -> list[tuple[int, int, int, int, int]]:
        """Per card over transactions with ``after_id < id <= upto_id``, in one pass: ``(algorithm_id, fills,
        Σ signed shares, Σ signed cost in millionths of a dollar, fills whose price has more than
        six decimals)``. Cost in integer millionths is exact for prices of up to six
        decimals; for a card with any other price the caller sums with :meth:`fill_sums_by_price`."""
        return self._conn.execute(
            "SELECT algorithm_id, COUNT(*), SUM(CASE WHEN type = 'buy' THEN shares ELSE -shares END), "
            "SUM(CAST(ROUND((CASE WHEN type = 'buy' THEN shares ELSE -shares END) * price * 1000000) "
            "AS INTEGER)), SUM(ABS(price * 1000000 - ROUND(price * 1000000)) > 0.001) "
            "FROM transactions WHERE id > ? AND id <= ? GROUP BY algorithm_id", (after_id, upto_id)).fetchall()

    def fill_sums_by_price(self, algo_id: int, upto_id: int, after_id: int = 0) -> list[tuple[str, float, int]]:
        """One card's ``(side, price, Σ shares)`` per exact stored price, ``after_id < id <= upto_id``."""
        return self._conn.execute(
            "SELECT type, price, SUM(shares) FROM transactions WHERE algorithm_id = ? AND id > ? AND id <= ? "
            "GROUP BY type, price", (algo_id, after_id, upto_id)).fetchall()

    def newest_fill_time(self, algo_id: int, upto_id: int) -> str | None:
        """A card's latest fill time (UTC text) among transactions with ``id <= upto_id``."""
        return self._conn.execute("SELECT MAX(timestamp) FROM transactions WHERE algorithm_id = ? AND id <= ?",
                                  (algo_id, upto_id)).fetchone()[0]

    def transactions_since(self, algo_id: int, timestamp: str, upto_id: int) -> list[TransactionRecord]:
        """A card's fills at or after ``timestamp`` with ``id <= upto_id``, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_TRANSACTION_COLUMNS} FROM transactions WHERE algorithm_id = ? AND timestamp >= ? "
            "AND id <= ? ORDER BY timestamp, id", (algo_id, timestamp, upto_id)).fetchall()
        return [TransactionRecord(*row) for row in rows]

    def transactions_page(self, algo_id: int, offset: int, limit: int, upto_id: int, *,
                          newest_first: bool = False) -> list[TransactionRecord]:
        """``limit`` of a card's fills with ``id <= upto_id`` from position ``offset`` in time order
        (oldest first, or newest first), for reading a long history a page at a time."""
        order = "DESC" if newest_first else "ASC"
        rows = self._conn.execute(
            f"SELECT {_TRANSACTION_COLUMNS} FROM transactions WHERE algorithm_id = ? AND id <= ? "
            f"ORDER BY timestamp {order}, id {order} LIMIT ? OFFSET ?",
            (algo_id, upto_id, limit, offset)).fetchall()
        return [TransactionRecord(*row) for row in rows]

    def all_transactions(self) -> list[TransactionRecord]:
        """Every transaction of every card, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_TRANSACTION_COLUMNS} FROM transactions ORDER BY timestamp, id").fetchall()
        return [TransactionRecord(*row) for row in rows]

    # -- orders journal ------------------------------------------------------------------------

    def journal_order(self, client_order_id: str, algorithm_id: int, symbol: str, side: str,
                      shares: int, submitted_at: str) -> bool:
        """Write a decision to the journal as 'pending' before it is sent to the broker.

        Returns False (and changes nothing) if that client order id is already journaled.
        """
        return self._insert_order(client_order_id, algorithm_id, symbol, side, shares, submitted_at,
                                  "pending", None)

    def _insert_order(self, client_order_id: str, algorithm_id: int, symbol: str, side: str, shares: int,
                      submitted_at: str, status: str, broker_order_id: str | None) -> bool:
        """One checked journal row for a known card; False if the client order id is there already."""
        coid = _client_order_id(client_order_id)
        _ticker(symbol)
        _side(side)
        _positive_int(shares, "share count")
        stamp = _timestamp(submitted_at, "submitted_at")
        with transaction(self._conn):
            if self._conn.execute("SELECT 1 FROM algorithm_instances WHERE id = ?",
                                  (algorithm_id,)).fetchone() is None:
                raise StoreError(f"no card with id {algorithm_id!r}: order not journaled")
            cursor = self._conn.execute(
                "INSERT INTO orders (client_order_id, algorithm_id, symbol, side, shares, status, "
                "submitted_at, broker_order_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (client_order_id) DO NOTHING",
                (coid, algorithm_id, symbol, side, shares, status, stamp, broker_order_id))
        return cursor.rowcount == 1

    def _require_order(self, client_order_id: str) -> OrderRecord:
        order = self.get_order(client_order_id)
        if order is None:
            raise StoreError(f"no journaled order with client order id {client_order_id!r}")
        return order

    def mark_submitted(self, client_order_id: str, broker_order_id: str) -> bool:
        """Note that the broker acknowledged a pending order. False if it was no longer pending."""
        with transaction(self._conn):
            self._require_order(client_order_id)
            cursor = self._conn.execute(
                "UPDATE orders SET status = 'submitted', broker_order_id = ? "
                "WHERE client_order_id = ? AND status = 'pending'",
                (broker_order_id, client_order_id))
        return cursor.rowcount == 1

    def record_fill(self, client_order_id: str, filled_qty: int, avg_price: float | None,
                    filled_at: str, final_status: str) -> int | None:
        """Close an order and record its fill as a transaction, both in one SQLite transaction.

        Exactly once: if a transaction for this order exists already, nothing changes and its id
        is returned. With ``filled_qty == 0`` only the order is closed and None is returned.
        A partial fill records the filled quantity only.
        """
        if final_status not in FINAL_ORDER_STATUSES:
            raise StoreError(f"final status must be one of {', '.join(FINAL_ORDER_STATUSES)}, "
                             f"got {final_status!r}")
        if isinstance(filled_qty, bool) or not isinstance(filled_qty, int) or filled_qty < 0:
            raise StoreError(f"filled quantity must be a whole number >= 0, got {filled_qty!r}")
        price = _positive_money(avg_price, "average fill price") if filled_qty else None
        stamp = _timestamp(filled_at, "filled_at")
        with transaction(self._conn):
            order = self._require_order(client_order_id)
            existing = self._conn.execute(
                "SELECT id FROM transactions WHERE client_order_id = ?",
                (client_order_id,)).fetchone()
            if existing is not None:
                return existing[0]
            if filled_qty > order.shares:
                raise StoreError(f"order {client_order_id!r} was for {order.shares} shares; "
                                 f"a fill of {filled_qty} is impossible")
            self._conn.execute(
                "UPDATE orders SET status = ?, filled_qty = ?, filled_avg_price = ?, filled_at = ? "
                "WHERE client_order_id = ?",
                (final_status, filled_qty, price, stamp, client_order_id))
            if not filled_qty:
                return None
            return self._insert_transaction(order.algorithm_id, order.side, filled_qty,
                                            price, stamp, client_order_id)  # type: ignore[arg-type]

    def mark_final(self, client_order_id: str, status: str, error: str | None) -> bool:
        """Close an open order with no fill (rejected, canceled, failed …) and why.

        Returns False if the order was already final: a recorded outcome is never overwritten.
        """
        if status not in FINAL_ORDER_STATUSES:
            raise StoreError(f"final status must be one of {', '.join(FINAL_ORDER_STATUSES)}, "
                             f"got {status!r}")
        with transaction(self._conn):
            self._require_order(client_order_id)
            cursor = self._conn.execute(
                "UPDATE orders SET status = ?, error = ? "
                "WHERE client_order_id = ? AND status IN ('pending', 'submitted')",
                (status, error, client_order_id))
        return cursor.rowcount == 1

    def adopt_order(self, client_order_id: str, algorithm_id: int, symbol: str, side: str, shares: int,
                    submitted_at: str, broker_order_id: str) -> bool:
        """Journal an order found at the broker that the journal lacks, as 'submitted'.

        For broker-side reconciliation after a power cut took the journal row; the fill is then
        recorded with :meth:`record_fill` as for any order. Not synced one by one: the caller's
        durable write of its reconciled point syncs them all (a cut before it redoes the pass).
        Returns False (and changes nothing) if the client order id is journaled already; raises
        StoreError if the card is unknown.
        """
        return self._insert_order(client_order_id, algorithm_id, symbol, side, shares, submitted_at,
                                  "submitted", broker_order_id)

    def journal_batch(self, orders: Sequence[JournalRow], nets: Sequence[NetJournalRow],
                      submitted_at: str) -> set[str]:
        """Journal a minute's orders as 'pending' in one transaction, synced to disk before returning.

        ``orders`` are plain card orders, ``nets`` netted orders with their cards' shares (each
        written whole or not at all). An order whose id (or, for a netted one, any of whose ids) is
        journaled already is skipped. Returns the ids written (plain and parent ids).
        """
        stamp = _timestamp(submitted_at, "submitted_at")
        for coid, _card, symbol, side, shares in orders:
            _client_order_id(coid), _ticker(symbol), _side(side), _positive_int(shares, "share count")
        for parent, symbol, net_side, _shares, price, children in nets:
            _client_order_id(parent), _ticker(symbol)
            if price is not None:
                _positive_money(price, "cross price")
            if net_side is not None:
                _side(net_side)
            for child, _card, child_side, child_shares in children:
                _client_order_id(child), _side(child_side), _positive_int(child_shares, "share count")
        written: set[str] = set()
        cards = {row[1] for row in orders} | {c[1] for net in nets for c in net[5]}
        with self._synced(True), transaction(self._conn):
            known = {row[0] for row in self._conn.execute(
                f"SELECT id FROM algorithm_instances WHERE id IN ({','.join('?' * len(cards))})", tuple(cards))}
            missing = cards - known
            if missing:
                raise StoreError(f"no card with id {min(missing)!r}: orders not journaled")
            for coid, card, symbol, side, shares in orders:
                cursor = self._conn.execute(
                    "INSERT INTO orders (client_order_id, algorithm_id, symbol, side, shares, status, "
                    "submitted_at) VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (client_order_id) DO NOTHING",
                    (coid, card, symbol, side, shares, stamp))
                if cursor.rowcount == 1:
                    written.add(coid)
            for parent, symbol, net_side, shares, price, children in nets:
                ids = [parent] + [c[0] for c in children]
                taken = self._conn.execute(
                    f"SELECT COUNT(*) FROM orders WHERE client_order_id IN ({','.join('?' * len(ids))})",
                    ids).fetchone()[0] + self._conn.execute(
                    "SELECT COUNT(*) FROM net_orders WHERE client_order_id = ?", (parent,)).fetchone()[0]
                if taken:
                    continue
                self._conn.execute(
                    f"INSERT INTO net_orders ({_NET_COLUMNS}) VALUES (?, ?, ?, ?, 'pending', ?, ?, NULL, 0, "
                    "NULL, NULL, NULL)",
                    (parent, symbol, net_side, shares, stamp, None if price is None else float(price)))
                self._conn.executemany(
                    "INSERT INTO orders (client_order_id, algorithm_id, symbol, side, shares, status, "
                    "submitted_at, parent_id) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                    [(child, card, symbol, child_side, child_shares, stamp, parent)
                     for child, card, child_side, child_shares in children])
                written.add(parent)
        return written

    def get_net_order(self, client_order_id: str) -> NetOrderRecord | None:
        """One netted broker order by its client order id, or None."""
        row = self._conn.execute(f"SELECT {_NET_COLUMNS} FROM net_orders WHERE client_order_id = ?",
                                 (client_order_id,)).fetchone()
        return None if row is None else NetOrderRecord(*row)

    def open_net_orders(self) -> list[NetOrderRecord]:
        """Netted orders not final yet, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_NET_COLUMNS} FROM net_orders WHERE status IN ('pending', 'submitted') "
            "ORDER BY submitted_at, client_order_id").fetchall()
        return [NetOrderRecord(*row) for row in rows]

    def net_shares(self, parent_id: str) -> list[OrderRecord]:
        """The cards' shares of a netted order, in card order."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE parent_id = ? ORDER BY algorithm_id, client_order_id",
            (parent_id,)).fetchall()
        return [OrderRecord(*row) for row in rows]

    def mark_net_submitted(self, client_order_id: str, broker_order_id: str) -> bool:
        """Note that the broker acknowledged a pending netted order. False if it was no longer pending."""
        with transaction(self._conn):
            cursor = self._conn.execute(
                "UPDATE net_orders SET status = 'submitted', broker_order_id = ? "
                "WHERE client_order_id = ? AND status = 'pending'", (broker_order_id, client_order_id))
        return cursor.rowcount == 1

    def book_net_order(self, client_order_id: str, status: str, filled_qty: int, avg_price: float | None,
                       filled_at: str, error: str | None, executed: Mapping[str, int],
                       price: float | None) -> list[tuple[str, int]]:
        """Close a netted order and book every card's executed share, all in one SQLite transaction.

        ``executed`` maps each card's client order id to the shares booked to it at ``price``
        (its crossed part plus its part of the broker's fill). Exactly once: a netted order already
        final changes nothing and returns []. Returns (card's client order id, transaction id) of
        the shares booked.
        """
        if status not in FINAL_ORDER_STATUSES:
            raise StoreError(f"final status must be one of {', '.join(FINAL_ORDER_STATUSES)}, got {status!r}")
        stamp = _timestamp(filled_at, "filled_at")
        fill_price = _positive_money(avg_price, "average fill price") if filled_qty else None
        booked: list[tuple[str, int]] = []
        with transaction(self._conn):
            cursor = self._conn.execute(
                "UPDATE net_orders SET status = ?, filled_qty = ?, filled_avg_price = ?, filled_at = ?, error = ? "
                "WHERE client_order_id = ? AND status IN ('pending', 'submitted')",
                (status, filled_qty, fill_price, stamp if filled_qty else None, error, client_order_id))
            if cursor.rowcount != 1:
                if self.get_net_order(client_order_id) is None:
                    raise StoreError(f"no netted order with client order id {client_order_id!r}")
                return booked
            for child in self.net_shares(client_order_id):
                shares = executed.get(child.client_order_id, 0)
                if not 0 <= shares <= child.shares:
                    raise StoreError(f"{child.client_order_id!r} was for {child.shares} shares; "
                                     f"booking {shares} is impossible")
                if shares:
                    value = _positive_money(price, "booking price")
                    child_status = "filled" if shares == child.shares else "partial"
                else:
                    value, child_status = None, status if status in ("rejected", "canceled", "failed") else "canceled"
                self._conn.execute(
                    "UPDATE orders SET status = ?, filled_qty = ?, filled_avg_price = ?, filled_at = ?, error = ? "
                    "WHERE client_order_id = ?",
                    (child_status, shares, value, stamp if shares else None,
                     None if shares == child.shares else error, child.client_order_id))
                if shares:
                    booked.append((child.client_order_id, self._insert_transaction(
                        child.algorithm_id, child.side, shares, value, stamp,  # type: ignore[arg-type]
                        child.client_order_id)))
        return booked

    def newest_order_time(self) -> str | None:
        """The latest ``submitted_at`` in the journal (None when it is empty)."""
        return self._conn.execute("SELECT MAX(submitted_at) FROM orders").fetchone()[0]

    def get_order(self, client_order_id: str) -> OrderRecord | None:
        """One journal entry by client order id, or None."""
        row = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?",
            (client_order_id,)).fetchone()
        return None if row is None else OrderRecord(*row)

    def open_orders(self) -> list[OrderRecord]:
        """Orders not final yet (pending or submitted), oldest first: to reconcile at start."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status IN ('pending', 'submitted') "
            "ORDER BY submitted_at, client_order_id").fetchall()
        return [OrderRecord(*row) for row in rows]

    def orders_for(self, algo_id: int) -> list[OrderRecord]:
        """A card's journal entries, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE algorithm_id = ? "
            "ORDER BY submitted_at, client_order_id", (algo_id,)).fetchall()
        return [OrderRecord(*row) for row in rows]

    # -- config --------------------------------------------------------------------------------

    @contextmanager
    def _synced(self, durable: bool) -> Iterator[None]:
        """With ``durable``, commits inside are fsynced (``synchronous=FULL``) and the setting restored."""
        if not durable:
            yield
            return
        before = self._conn.execute("PRAGMA synchronous").fetchone()[0]
        self._conn.execute("PRAGMA synchronous = FULL")
        try:
            yield
        finally:
            self._conn.execute(f"PRAGMA synchronous = {int(before)}")

    def get_config(self, key: str) -> str | None:
        """A setting's text value, or None if unset."""
        row = self._conn.execute("SELECT value FROM system_config WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_config(self, key: str, value: str) -> None:
        """Set one setting."""
        self.set_configs({key: value})

    def set_configs(self, mapping: Mapping[str, str | None], *, durable: bool = False) -> None:
        """Set several settings atomically; a value of None deletes that key.

        ``durable`` syncs the commit to disk before returning, whatever the file's usual
        ``synchronous`` setting (for the few values a power cut must never take back).
        """
        items = list(mapping.items())
        for key, value in items:
            if not isinstance(key, str) or not key:
                raise StoreError(f"setting names must be non-empty text, got {key!r}")
            if value is not None and not isinstance(value, str):
                # The value is not echoed: settings may hold secrets.
                raise StoreError(f"setting {key!r} must be text, got {type(value).__name__}")
        with self._synced(durable), transaction(self._conn):
            for key, value in items:
                if value is None:
                    self._conn.execute("DELETE FROM system_config WHERE key = ?", (key,))
                else:
                    self._conn.execute(
                        "INSERT INTO system_config (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))
