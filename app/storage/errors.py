"""SQLite errors sorted at the storage boundary: what a person can fix, and what is a bug.

A full disk, a read-only folder, a failing disk, a file that cannot be opened, a damaged file or a
lock held too long are the machine's problems: they become :class:`StorageUnavailable` with one
sentence that says what to do. Everything else (a syntax error, a constraint the code should have
checked) is a bug and is re-raised unchanged, so it is never dressed up as an environment problem.
This follows qutebrowser's ``misc/sql.py`` (KnownError vs BugError).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

FULL = "the data disk is full — free space and restart"
READONLY = "the data folder is read-only — make it writable and restart"
IO_ERROR = "the data disk failed to write (disk I/O error) — check the disk and restart"
CANT_OPEN = "a database file cannot be opened — check the data folder and restart"
DAMAGED = "system.db or stocks.db is damaged — restart to check it"
LOCKED = "another program holds the database locked — close it (or the other AutoTrader) and retry"

# (SQLite extended error-name prefix, kind, sentence); the names come with Python 3.11's sqlite3.
_BY_NAME = (
    ("SQLITE_FULL", "full", FULL),
    ("SQLITE_READONLY", "readonly", READONLY),
    ("SQLITE_IOERR", "io", IO_ERROR),
    ("SQLITE_CANTOPEN", "cantopen", CANT_OPEN),
    ("SQLITE_CORRUPT", "corrupt", DAMAGED),
    ("SQLITE_NOTADB", "corrupt", DAMAGED),
    ("SQLITE_BUSY", "locked", LOCKED),
    ("SQLITE_LOCKED", "locked", LOCKED),
)
# Messages of errors raised without an error name (older paths inside the sqlite3 module).
_BY_TEXT = (
    ("disk is full", "full", FULL),
    ("readonly database", "readonly", READONLY),
    ("disk i/o error", "io", IO_ERROR),
    ("unable to open database", "cantopen", CANT_OPEN),
    ("malformed", "corrupt", DAMAGED),
    ("not a database", "corrupt", DAMAGED),
    ("database is locked", "locked", LOCKED),
)
_BY_ERRNO = {28: ("full", FULL), 30: ("readonly", READONLY), 5: ("io", IO_ERROR), 13: ("readonly", READONLY)}


class StorageUnavailable(Exception):
    """The data folder cannot be used now for a reason a person can fix; ``str()`` says how.

    ``kind`` is one of full, readonly, io, cantopen, corrupt, locked. The SQLite or OS error it
    was sorted from is its ``__cause__`` (for the log, never for the screen).
    """

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    @property
    def stops_trading(self) -> bool:
        """Nothing can be recorded: the engine must stop sending orders (a lock only waits)."""
        return self.kind != "locked"


def classify(exc: BaseException) -> tuple[str, str] | None:
    """(kind, sentence) when ``exc`` itself is an environment problem; None for a bug or anything else."""
    if isinstance(exc, StorageUnavailable):
        return exc.kind, exc.reason
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        for prefix, kind, reason in _BY_NAME:
            if name.startswith(prefix):
                return kind, reason
        text = str(exc).lower()
        for needle, kind, reason in _BY_TEXT:
            if needle in text:
                return kind, reason
        return None
    if isinstance(exc, OSError):
        return _BY_ERRNO.get(exc.errno or 0)
    return None


def sort_error(exc: BaseException) -> BaseException:
    """The exception to raise for ``exc``: a :class:`StorageUnavailable`, or ``exc`` itself (a bug)."""
    found = classify(exc)
    if found is None or isinstance(exc, StorageUnavailable):
        return exc
    kind, reason = found
    sorted_exc = StorageUnavailable(reason, kind)
    sorted_exc.__cause__ = exc
    return sorted_exc


@contextmanager
def sorted_errors() -> Iterator[None]:
    """Raise environment problems from the block as :class:`StorageUnavailable`; re-raise the rest."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        sorted_exc = sort_error(exc)
        if sorted_exc is exc:
            raise
        raise sorted_exc from exc
