"""Opening SQLite files the one way this project does, and the write-transaction helper.

Every thread opens its own connection with :func:`connect`; connections never cross threads.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from app.storage.errors import sorted_errors

BUSY_TIMEOUT_MS = 10_000
CACHE_KIB = 512  # page cache per connection


Migration = Callable[[sqlite3.Connection], None]


SYNCHRONOUS_LEVELS = ("NORMAL", "FULL")
FILE_MODE = 0o600  # databases hold the PIN hash and the trading record: owner only


def connect(path: str | Path, *, readonly: bool = False, shared: bool = False,
            synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open ``path`` in WAL mode with foreign keys on, the given ``synchronous`` level and a busy timeout.

    ``synchronous="FULL"`` fsyncs the WAL at every commit, so a committed row survives a power cut;
    NORMAL only syncs at checkpoints (a power cut may lose the last commits, a process kill never).
    The connection is in autocommit mode (``isolation_level=None``); group writes with
    :func:`transaction`. ``readonly`` opens an existing file without write access. A full, read-only,
    missing or damaged file raises :class:`~app.storage.errors.StorageUnavailable`. A file created
    here is made readable by its owner only (SQLite gives its -wal and -shm the same mode).
    """
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}, got {synchronous!r}")
    with sorted_errors():
        return _connect(Path(path), readonly=readonly, shared=shared, synchronous=synchronous)


def _connect(path: Path, *, readonly: bool, shared: bool, synchronous: str) -> sqlite3.Connection:
    created = False
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=not shared)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=not shared)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    if created:
        try:
            os.chmod(path, FILE_MODE)
        except OSError:
            pass  # not ours to change (a shared folder): the data folder's own mode still protects it
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # SQLite's default cache (2 MB per connection) fills slowly as the files grow, so a process with
    # a dozen connections gains memory for weeks. The hot pages (latest bars, open orders, upper
    # b-tree levels) fit well within this; the OS page cache serves the rest.
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """Run the block in one SQLite transaction: commit on success, roll back on any exception.

    ``BEGIN IMMEDIATE`` takes the write lock up front so two writers wait on the busy
    timeout instead of failing half-way with ``database is locked``. Environment problems (disk
    full, read-only, I/O error, damage, a lock held past the timeout) come out as
    :class:`~app.storage.errors.StorageUnavailable`; other errors unchanged.
    """
    with sorted_errors():
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            # On a full or failing disk SQLite has already rolled back by itself; a second ROLLBACK
            # would raise and hide the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Apply the migrations this file has not seen yet, tracked in ``PRAGMA user_version``.

    ``migrations[i]`` upgrades a database from version ``i`` to ``i + 1``. Each runs in its own
    transaction together with the version bump, so a crash leaves a consistent version.
    Returns the resulting version. A file newer than this code is refused.
    """
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > len(migrations):
        raise RuntimeError(
            f"database schema version {current} is newer than this AutoTrader understands "
            f"({len(migrations)}); upgrade AutoTrader")
    for version in range(current, len(migrations)):
        with transaction(conn):
            migrations[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return len(migrations)


def _require_version(conn: sqlite3.Connection, expected: int) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current != expected:
        raise RuntimeError(f"database schema version {current} is not the {expected} this AutoTrader reads; "
                           "open it once read-write (start the kiosk) to migrate it")


def integrity_ok(conn: sqlite3.Connection) -> tuple[bool, str]:
    """Run ``PRAGMA integrity_check``; return (ok, first problem or 'ok')."""
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    first = rows[0][0] if rows else "no answer"
    return first == "ok", first


class SqliteStore:
    """Base of the stores: one connection to one file, migrated on open, closed on exit.

    Subclasses set ``MIGRATIONS`` (and ``SYNCHRONOUS``) and may override :meth:`_after_open` for first-use rows.
    """

    MIGRATIONS: Sequence[Migration] = ()
    SYNCHRONOUS = "NORMAL"  # stores whose commits must survive a power cut say "FULL"

    def __init__(self, path: str | Path, *, shared: bool = False, readonly: bool = False) -> None:
        self._path = Path(path)
        self._conn = connect(self._path, shared=shared, readonly=readonly, synchronous=self.SYNCHRONOUS)
        try:
            with sorted_errors():
                if readonly:
                    # A reader never migrates: it must find the schema this code was written for.
                    _require_version(self._conn, len(self.MIGRATIONS))
                else:
                    migrate(self._conn, self.MIGRATIONS)
                    self._after_open()
        except BaseException:
            self._conn.close()
            raise

    def _after_open(self) -> None:
        """Hook run once after migrations (inside the constructor's error handling)."""

    def close(self) -> None:
        """Close the connection (the last close also folds the WAL back into the file)."""
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection: for tests and maintenance only, not for queries elsewhere."""
        return self._conn

    def integrity_check(self) -> tuple[bool, str]:
        """``PRAGMA integrity_check`` result as (ok, first problem or 'ok')."""
        return integrity_ok(self._conn)
