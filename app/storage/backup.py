"""Online backups of system.db with SQLite's backup API, checking a database file, and restoring one.

A backup is a consistent single-file copy (journal mode DELETE, no ``-wal`` beside it) taken while
the engine keeps its connection open: the backup API copies committed pages, including those still
in the WAL. Files are named by UTC day, ``system-YYYY-MM-DD.db``, so sorting by name is sorting by
age. Nothing here knows about the engine; the engine's maintenance decides when to call it.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

from app.storage import system_store

BACKUP_PATTERN = re.compile(r"system-(\d{4}-\d{2}-\d{2})\.db")
SYSTEM_TABLES = ("algorithm_instances", "transactions", "system_config", "orders")
KEEP_BACKUPS = 14  # the newest daily backups kept
KEEP_MONTHLY = 12  # plus the first backup of each of the newest months
DAMAGED_SUFFIX = ".damaged"  # a copy that failed its check: kept for a person, never listed or counted
MODE_KEY = "backup_mode"  # system_config row written into each backup copy: sim, paper or live
FILE_MODE = 0o600
_SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupError(ValueError):
    """A backup file that cannot be used (or a backup that could not be made); the text says why."""


@dataclass(frozen=True, slots=True)
class BackupFile:
    """One backup in a backups folder."""

    path: Path
    day: date
    size: int
    modified: datetime  # aware UTC: when the file was written


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What a valid system.db backup holds (shown before a restore)."""

    user_version: int
    instances: int
    running: int
    transactions: int
    orders: int


def backup_name(day: date) -> str:
    """``system-YYYY-MM-DD.db`` for the UTC day ``day``."""
    return f"system-{day.isoformat()}.db"


def list_backups(folder: Path) -> list[BackupFile]:
    """The backups in ``folder``, oldest first (an absent folder has none)."""
    folder = Path(folder)
    found: list[BackupFile] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = BACKUP_PATTERN.fullmatch(entry.name)
        if match is None or not entry.is_file():
            continue
        try:
            day = date.fromisoformat(match.group(1))
            stat = entry.stat()
        except (ValueError, OSError):
            continue
        found.append(BackupFile(Path(entry.path), day, stat.st_size,
                                datetime.fromtimestamp(stat.st_mtime, timezone.utc)))
    found.sort(key=lambda b: b.day)
    return found


def newest_backup(folder: Path) -> BackupFile | None:
    """The most recent backup in ``folder``, or None."""
    backups = list_backups(folder)
    return backups[-1] if backups else None


def kept_backups(backups: list[BackupFile], keep: int = KEEP_BACKUPS,
                 monthly: int = KEEP_MONTHLY) -> list[BackupFile]:
    """Which of ``backups`` (oldest first) retention keeps: the newest ``keep``, plus the first backup of
    each of the newest ``monthly`` calendar months (so a year on damaged storage still leaves old copies)."""
    kept = {b.path for b in backups[-keep:]}
    firsts: dict[tuple[int, int], BackupFile] = {}
    for backup in backups:
        firsts.setdefault((backup.day.year, backup.day.month), backup)
    for month in sorted(firsts)[-monthly:] if monthly > 0 else ():
        kept.add(firsts[month].path)
    return [b for b in backups if b.path in kept]


def prune_backups(folder: Path, keep: int = KEEP_BACKUPS, monthly: int = KEEP_MONTHLY) -> list[Path]:
    """Delete the backups retention does not keep (see :func:`kept_backups`); returns the deleted paths.
    Files put aside as damaged are neither counted nor deleted."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    backups = list_backups(folder)
    kept = {b.path for b in kept_backups(backups, keep, monthly)}
    removed = []
    for old in (b for b in backups if b.path not in kept):
        try:
            old.path.unlink()
            removed.append(old.path)
        except FileNotFoundError:
            pass
    return removed


def _copy_into(source: sqlite3.Connection, dest: Path, *, mode: str | None = None) -> None:
    """Copy ``source`` into a new file ``dest`` atomically: a crash never leaves half a database there.

    The copy is written owner-only, stamped with ``mode`` (a ``system_config`` row of the copy, when
    given) and must pass ``PRAGMA quick_check``: one that fails is renamed ``<dest>.damaged`` and a
    :class:`BackupError` says so (a damaged copy must never replace or outnumber good ones).
    """
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    target = sqlite3.connect(partial, isolation_level=None)
    try:
        os.chmod(partial, FILE_MODE)
        source.backup(target)
        # The copied header says WAL; a backup must be one self-contained file.
        target.execute("PRAGMA journal_mode = DELETE")
        if mode is not None:
            target.execute("INSERT INTO system_config (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (MODE_KEY, mode))
        rows = target.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        target.close()
        _put_aside(partial, dest)
        raise BackupError(f"the copy for {dest.name} is damaged ({exc}); kept aside as "
                          f"{dest.name}{DAMAGED_SUFFIX}") from exc
    except BaseException:
        target.close()
        partial.unlink(missing_ok=True)
        raise
    target.close()
    first = rows[0][0] if rows else "no answer"
    if first != "ok":
        _put_aside(partial, dest)
        raise BackupError(f"the copy for {dest.name} failed its check ({first}); kept aside as "
                          f"{dest.name}{DAMAGED_SUFFIX}")
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, dest)
    try:  # make the rename itself durable (power cuts)
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _put_aside(partial: Path, dest: Path) -> None:
    try:
        os.replace(partial, dest.with_name(dest.name + DAMAGED_SUFFIX))
    except OSError:
        partial.unlink(missing_ok=True)


def backup_connection(source: sqlite3.Connection, dest: Path, *, mode: str | None = None) -> Path:
    """Back up the database behind an open connection (on its own thread, outside a transaction) to
    ``dest``, recording ``mode`` in the copy. Raises :class:`BackupError` when the copy fails its check."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _copy_into(source, dest, mode=mode)
    return dest


def backup_mode(path: Path) -> str | None:
    """The mode (sim, paper, live) a backup was taken in, or None for a backup from before modes were recorded."""
    return peek_config(path, MODE_KEY)


def _open_uri(path: Path, mode: str) -> sqlite3.Connection:
    # A URI so that opening never creates a missing file (plain connect() would).
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None)


def file_integrity(path: Path, *, quick: bool = False) -> tuple[bool, str]:
    """``PRAGMA integrity_check`` (or ``quick_check``) of a database file: (ok, first problem or 'ok').

    A file that is not a database at all, or cannot be opened, is reported as not ok with SQLite's words.
    """
    try:
        conn = _open_uri(path, "rw")
        try:
            rows = conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return False, str(exc)
    first = rows[0][0] if rows else "no answer"
    return first == "ok", first


def check_backup(path: Path) -> BackupSummary:
    """Validate a system.db backup: a sound SQLite file with the expected tables and a schema version
    this AutoTrader understands. Raises :class:`BackupError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    try:
        conn = _open_uri(path, "ro")
    except sqlite3.Error as exc:
        raise BackupError(f"{path.name} cannot be opened: {exc}") from None
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        first = rows[0][0] if rows else "no answer"
        if first != "ok":
            raise BackupError(f"{path.name} is damaged: {first}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in SYSTEM_TABLES if t not in tables]
        if missing:
            raise BackupError(f"{path.name} is not a system.db backup: it has no {', '.join(missing)} table")
        newest = len(system_store.MIGRATIONS)
        if not 1 <= version <= newest:
            raise BackupError(f"{path.name} has schema version {version}; this AutoTrader reads 1 to {newest}")
        counts = [conn.execute(sql).fetchone()[0] for sql in (
            "SELECT COUNT(*) FROM algorithm_instances",
            "SELECT COUNT(*) FROM algorithm_instances WHERE status = 'running'",
            "SELECT COUNT(*) FROM transactions",
            "SELECT COUNT(*) FROM orders")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path.name} is not a usable database: {exc}") from None
    finally:
        conn.close()
    return BackupSummary(version, *counts)


def move_aside(path: Path, suffix: str) -> Path:
    """Rename a database file and its ``-wal`` to ``<name>.<suffix>`` (the ``-shm`` is dropped: SQLite
    rebuilds it). Returns the new path of the main file. The pair stays openable together."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.{suffix}")
    os.replace(path, aside)
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + "-wal"))
    path.with_name(path.name + "-shm").unlink(missing_ok=True)
    return aside


def restore_backup(backup: Path, target: Path, stamp: str) -> Path | None:
    """Replace ``target`` (system.db) with a copy of ``backup`` made with the backup API.

    The current file (with its ``-wal``) is kept as ``<target>.before-restore-<stamp>``; returns that
    path, or None when there was no current file. The backup is validated first and left untouched.
    Nobody may have ``target`` open meanwhile (the caller checks).
    """
    backup, target = Path(backup), Path(target)
    check_backup(backup)
    incoming = target.with_name(target.name + ".restoring")
    source = _open_uri(backup, "ro")
    try:
        _copy_into(source, incoming)
    finally:
        source.close()
    _drop_mode(incoming)
    kept = None
    if target.exists():
        kept = move_aside(target, f"before-restore-{stamp}")
    for side in _SIDE_FILES:  # a stray journal of the old file must not be applied to the new one
        target.with_name(target.name + side).unlink(missing_ok=True)
    os.replace(incoming, target)
    return kept


def _drop_mode(path: Path) -> None:
    # The stamp describes a backup file; a restored system.db is a live file again.
    conn = _open_uri(path, "rw")
    try:
        conn.execute("DELETE FROM system_config WHERE key = ?", (MODE_KEY,))
    finally:
        conn.close()


def peek_config(path: Path, key: str) -> str | None:
    """One ``system_config`` value read without writing anything; None if absent or unreadable."""
    try:
        conn = _open_uri(path, "ro")
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT value FROM system_config WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None if row is None else row[0]
