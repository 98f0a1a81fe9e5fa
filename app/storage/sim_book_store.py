"""sim_book.db: the simulated broker's own books (cash, orders, positions).

Kept in SQLite so a SIGKILLed sim engine finds its broker exactly where it left it and reconciles
its journal against it on restart, just as it would against Alpaca. Money is stored as TEXT
decimals; a fill changes the order, the cash and the position in one transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from app.storage.sqlite import SqliteStore, transaction
from app.storage.system_store import StoreError
from app.storage.timefmt import epoch_text

OPEN_STATUS = "submitted"
SIM_ORDER_STATUSES = ("submitted", "filled", "rejected", "canceled")
MAX_CLIENT_ORDER_ID = 128  # Alpaca's limit; the sim keeps the same rule


def _migration_1(conn: sqlite3.Connection) -> None:
    # One row only (id = 1): the account's cash.
    conn.execute("""CREATE TABLE sim_account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cash TEXT NOT NULL
    )""")
    conn.execute("""CREATE TABLE sim_orders (
        client_order_id TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty INTEGER NOT NULL CHECK (qty > 0),
        status TEXT NOT NULL CHECK (status IN ('submitted', 'filled', 'rejected', 'canceled')),
        submitted_ts INTEGER NOT NULL,
        filled_qty INTEGER NOT NULL DEFAULT 0 CHECK (filled_qty >= 0),
        filled_avg_price TEXT,
        filled_at TEXT,
        reason TEXT
    )""")
    # Settling runs before every broker call: finding "no open orders" must be one tiny index probe.
    conn.execute("CREATE INDEX sim_orders_open ON sim_orders(submitted_ts) WHERE status = 'submitted'")
    conn.execute("""CREATE TABLE sim_positions (
        symbol TEXT PRIMARY KEY,
        qty INTEGER NOT NULL CHECK (qty >= 0)
    ) WITHOUT ROWID""")


MIGRATIONS = (_migration_1,)

_ORDER_COLUMNS = ("client_order_id, id, symbol, side, qty, status, submitted_ts, filled_qty, "
                  "filled_avg_price, filled_at, reason")


@dataclass(frozen=True, slots=True)
class SimOrderRow:
    """One order as the simulated broker keeps it. ``submitted_ts`` is the decision minute (epoch s)."""

    client_order_id: str
    id: str
    symbol: str
    side: str  # 'buy' | 'sell'
    qty: int
    status: str  # one of SIM_ORDER_STATUSES
    submitted_ts: int
    filled_qty: int
    filled_avg_price: Decimal | None
    filled_at: str | None  # UTC text
    reason: str | None

    @property
    def is_open(self) -> bool:
        """True while the order waits for its fill bar."""
        return self.status == OPEN_STATUS


def _row(row: tuple) -> SimOrderRow:
    coid, oid, symbol, side, qty, status, ts, fqty, price, filled_at, reason = row
    return SimOrderRow(coid, oid, symbol, side, qty, status, ts, fqty,
                       None if price is None else Decimal(price), filled_at, reason)


def _money(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise StoreError(f"{what} must be a Decimal amount, got {type(value).__name__}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise StoreError(f"{what} is not a number: {str(value)[:30]!r}") from None
    if not amount.is_finite():
        raise StoreError(f"{what} must be a finite amount, got {value!r}")
    return amount


class SimBookStore(SqliteStore):
    """Cash, orders and positions of the simulated broker in one SQLite file. One per thread.

    ``starting_cash`` funds a new book; an existing file keeps the cash it already has.
    """

    MIGRATIONS = MIGRATIONS

    def __init__(self, path: str | Path, *, starting_cash: Decimal = Decimal("100000")) -> None:
        cash = _money(starting_cash, "starting cash")
        if cash < 0:
            raise StoreError(f"starting cash must not be negative, got {cash}")
        self._starting_cash = cash
        super().__init__(path)

    def _after_open(self) -> None:
        with transaction(self._conn):
            self._conn.execute("INSERT OR IGNORE INTO sim_account (id, cash) VALUES (1, ?)",
                               (str(self._starting_cash),))


    # -- reads -----------------------------------------------------------------------------

    def cash(self) -> Decimal:
        """The account's cash."""
        return Decimal(self._conn.execute("SELECT cash FROM sim_account WHERE id = 1").fetchone()[0])

    def position(self, symbol: str) -> int:
        """Shares held in ``symbol`` (0 if none)."""
        row = self._conn.execute("SELECT qty FROM sim_positions WHERE symbol = ?", (symbol,)).fetchone()
        return 0 if row is None else row[0]

    def positions(self) -> dict[str, int]:
        """Every non-zero position, by symbol."""
        rows = self._conn.execute("SELECT symbol, qty FROM sim_positions WHERE qty > 0 ORDER BY symbol")
        return dict(rows.fetchall())

    def get_order(self, client_order_id: str) -> SimOrderRow | None:
        """The order with this client id, or None."""
        row = self._conn.execute(f"SELECT {_ORDER_COLUMNS} FROM sim_orders WHERE client_order_id = ?",
                                 (client_order_id,)).fetchone()
        return None if row is None else _row(row)

    def open_orders(self) -> list[SimOrderRow]:
        """Orders still waiting for a fill, oldest decision first."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM sim_orders WHERE status = 'submitted' "
            "ORDER BY submitted_ts, rowid").fetchall()
        return [_row(r) for r in rows]

    def orders_since(self, submitted_ts: int) -> list[SimOrderRow]:
        """Every order decided at or after ``submitted_ts`` (epoch s), any status, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_ORDER_COLUMNS} FROM sim_orders WHERE submitted_ts >= ? "
            "ORDER BY submitted_ts, rowid", (submitted_ts,)).fetchall()
        return [_row(r) for r in rows]

    # -- writes ----------------------------------------------------------------------------

    def add_order(self, client_order_id: str, symbol: str, side: str, qty: int,
                  submitted_ts: int) -> SimOrderRow:
        """Accept a new order as 'submitted' with the next broker id (``sim-000001``, ...).

        A client id already used is refused with :class:`StoreError` and nothing is written.
        """
        if not isinstance(client_order_id, str) or not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID:
            raise StoreError(f"client order id must be 1-{MAX_CLIENT_ORDER_ID} characters of text, "
                             f"got {repr(client_order_id)[:40]}")
        if side not in ("buy", "sell"):
            raise StoreError(f"order side must be 'buy' or 'sell', got {side!r}")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise StoreError(f"order quantity must be a whole number above 0, got {qty!r}")
        if not isinstance(symbol, str) or not symbol:
            raise StoreError(f"order symbol must be text, got {symbol!r}")
        if isinstance(submitted_ts, bool) or not isinstance(submitted_ts, int):
            raise StoreError(f"submitted_ts must be epoch seconds, got {submitted_ts!r}")
        with transaction(self._conn):
            if self._conn.execute("SELECT 1 FROM sim_orders WHERE client_order_id = ?",
                                  (client_order_id,)).fetchone():
                raise StoreError(f"client order id {client_order_id!r} is already used")
            # Orders are never deleted, so the rowid counts them; MAX is a b-tree probe, COUNT a scan.
            number = self._conn.execute("SELECT COALESCE(MAX(rowid), 0) + 1 FROM sim_orders").fetchone()[0]
            self._conn.execute(
                "INSERT INTO sim_orders (client_order_id, id, symbol, side, qty, status, submitted_ts) "
                "VALUES (?, ?, ?, ?, ?, 'submitted', ?)",
                (client_order_id, f"sim-{number:06d}", symbol, side, qty, submitted_ts))
        order = self.get_order(client_order_id)
        assert order is not None
        return order

    def record_fill(self, client_order_id: str, price: Decimal, filled_ts: int) -> SimOrderRow:
        """Fill an open order completely at ``price`` in one transaction: order, cash and position.

        A sell that would leave a negative position is closed as 'rejected' instead (the broker
        never sells short). An order that is not open is returned unchanged, so a second call
        never counts the same fill twice.
        """
        price = _money(price, "fill price")
        if price <= 0:
            raise StoreError(f"fill price must be above 0, got {price}")
        with transaction(self._conn):
            row = self._conn.execute(
                f"SELECT {_ORDER_COLUMNS} FROM sim_orders WHERE client_order_id = ?",
                (client_order_id,)).fetchone()
            if row is None:
                raise StoreError(f"no simulated order with client id {client_order_id!r}")
            order = _row(row)
            if order.is_open:
                self._fill_locked(order, price, filled_ts)
        result = self.get_order(client_order_id)
        assert result is not None
        return result

    def _fill_locked(self, order: SimOrderRow, price: Decimal, filled_ts: int) -> None:
        held = self.position(order.symbol)
        if order.side == "sell" and order.qty > held:
            self._conn.execute(
                "UPDATE sim_orders SET status = 'rejected', reason = ? WHERE client_order_id = ?",
                (f"cannot sell {order.qty} {order.symbol}: the account holds {held} "
                 "(no short selling in the simulator)", order.client_order_id))
            return
        amount = order.qty * price
        cash = self.cash()
        new_cash = cash - amount if order.side == "buy" else cash + amount
        new_qty = held + order.qty if order.side == "buy" else held - order.qty
        self._conn.execute("UPDATE sim_account SET cash = ? WHERE id = 1", (str(new_cash),))
        self._conn.execute(
            "INSERT INTO sim_positions (symbol, qty) VALUES (?, ?) "
            "ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty", (order.symbol, new_qty))
        self._conn.execute(
            "UPDATE sim_orders SET status = 'filled', filled_qty = qty, filled_avg_price = ?, "
            "filled_at = ? WHERE client_order_id = ?",
            (str(price), epoch_text(filled_ts), order.client_order_id))

    def close_order(self, client_order_id: str, status: str, reason: str | None) -> SimOrderRow | None:
        """Mark an open order 'canceled' or 'rejected'; a final order is left as it is. None if unknown."""
        if status not in ("canceled", "rejected"):
            raise StoreError(f"an order can only be closed as 'canceled' or 'rejected', not {status!r}")
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE sim_orders SET status = ?, reason = ? "
                "WHERE client_order_id = ? AND status = 'submitted'",
                (status, reason, client_order_id))
        return self.get_order(client_order_id)
