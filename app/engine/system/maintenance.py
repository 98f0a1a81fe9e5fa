"""Keeping a mode's data folder healthy: the start-up integrity check, the daily system.db backup,
what a failed write means for trading, and the health figures ``autotrader status`` prints.

Qt-free: the orchestrator calls these on the engine thread; the CLI calls :func:`health_report`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from app.engine.events import Notice
from app.engine.system.logging_setup import AREA_FILES
from app.engine.system.data_folder import DataPaths
from app.storage.backup import (KEEP_BACKUPS, BackupError, backup_connection, backup_name, file_integrity,
                                move_aside, newest_backup, peek_config, prune_backups)
from app.storage.errors import StorageUnavailable, classify
from app.storage.market_store import MarketStore
from app.storage.system_store import SystemStore
from app.storage.timefmt import from_epoch, parse_utc_text, utc_text

log = logging.getLogger("autotrader.engine.maintenance")

STOPPED_PREFIX = "trading stopped: "
BACKUP_RETRY_S = 3600.0  # a failed backup is tried again after an hour, not every minute
_LOG_BLOCK = 64 * 1024
_DATED_LINE = re.compile(rb"\d{4}-\d{2}-\d{2}T")
_ERROR_LEVELS = (b"ERROR", b"CRITICAL")


class DatabaseDamaged(RuntimeError):
    """system.db failed its integrity check: the engine must not trade on it. The text says what to do."""


LAST_CYCLE_KEY = "last_cycle"  # system_config row the orchestrator rewrites after every cycle


def read_last_cycle(system: SystemStore) -> dict | None:
    """The last cycle's record (minute, timings, running totals), or None before the first cycle."""
    text = system.get_config(LAST_CYCLE_KEY)
    return json.loads(text) if text else None


def last_cycle_time(system_db: Path) -> datetime | None:
    """When (on the engine's clock) the last cycle over ``system_db`` started, read without writing;
    None when no engine has cycled there or the record cannot be read."""
    try:
        record = json.loads(peek_config(system_db, LAST_CYCLE_KEY) or "null")
        stamp = record.get("started") or record.get("minute") if isinstance(record, dict) else None
        return parse_utc_text(stamp) if stamp else None
    except (ValueError, TypeError):
        return None


class RecordedClock:
    """The time a running (or the last) engine over ``system_db`` recorded at its last cycle, read afresh
    at every ``now()`` (the engine keeps cycling meanwhile); before any cycle, ``fallback``'s time.

    For admin commands beside an accelerated sim: its simulated time may be days from the real one.
    """

    speed: float = 1.0

    def __init__(self, system_db: Path, fallback: Callable[[], datetime] | None = None):
        self._system_db = Path(system_db)
        self._fallback = fallback or utc_now

    def now(self) -> datetime:
        """The last cycle's start on the engine's clock, or the fallback's now."""
        return last_cycle_time(self._system_db) or self._fallback()

    def real_seconds_until(self, moment: datetime) -> float:
        """Always 0: this clock does not run by itself."""
        return 0.0

    def __repr__(self) -> str:
        return f"RecordedClock({self._system_db})"


def recorded_until(system: SystemStore, market: MarketStore) -> datetime | None:
    """The latest instant the data folder has seen: the newest stored bar's minute or the last cycle's
    minute, whichever is later; None for an empty folder. A clock before it is behind."""
    latest = [from_epoch(bar.ts) for bar in market.latest_bars(market.symbols()).values()]
    cycle = read_last_cycle(system)
    if cycle and cycle.get("minute"):
        try:
            latest.append(parse_utc_text(cycle["minute"]))
        except ValueError:
            pass
    return max(latest) if latest else None


def clock_behind_message(now: datetime, recorded: datetime) -> str:
    """The wall's sentence while the clock is behind what the data folder has recorded."""
    return (f"waiting for the clock: it reads {utc_text(now)}, before {utc_text(recorded)} already recorded "
            "here; no trading until time moves past it (check the time setting or the network time)")


def utc_now() -> datetime:
    """Real wall-clock time (backups and logs live in real time, even in sim mode)."""
    return datetime.now(timezone.utc)


def _stamp(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# --- start-up check ---------------------------------------------------------------------------

def damaged_system_message(paths: DataPaths, detail: str) -> str:
    """The sentence shown when system.db is corrupt: what is wrong and the two ways out."""
    newest = newest_backup(paths.backup_dir)
    restore = (f"Restore a backup with `autotrader restore {newest.path}`" if newest else
               f"There is no backup in {paths.backup_dir}")
    return (f"system.db is damaged: {detail}. {restore} or move the file away ({paths.system_db}) "
            "to start empty")


def check_at_start(paths: DataPaths, *, now: Callable[[], datetime] = utc_now) -> list[Notice]:
    """Check the mode's databases before the engine opens them.

    A damaged system.db raises :class:`DatabaseDamaged` (trading on it could lose or double a fill).
    A damaged stocks.db is moved aside and a fresh one starts (bars are fetched or generated again);
    the returned notices say so. Missing files are fine: they are created empty.
    """
    notices: list[Notice] = []
    if paths.system_db.exists():
        t0 = time.perf_counter()
        ok, detail = file_integrity(paths.system_db)
        log.info("system.db integrity check: %s (%.0f ms)", detail, (time.perf_counter() - t0) * 1000)
        if not ok:
            message = damaged_system_message(paths, detail)
            log.error(message)
            raise DatabaseDamaged(message)
    if paths.stocks_db.exists():
        t0 = time.perf_counter()
        ok, detail = file_integrity(paths.stocks_db, quick=True)
        log.info("stocks.db quick check: %s (%.0f ms)", detail, (time.perf_counter() - t0) * 1000)
        if not ok:
            aside = move_aside(paths.stocks_db, f"damaged-{_stamp(now())}")
            message = (f"stocks.db was damaged ({detail}); it was moved aside to {aside.name} and a fresh "
                       "one started: price bars will be fetched or generated again")
            log.error(message)
            notices.append(Notice("error", message, at=now()))
    return notices


# --- failed writes ----------------------------------------------------------------------------

def storage_problem(exc: BaseException) -> str | None:
    """Why trading must stop, if ``exc`` means the data folder can no longer record (disk full,
    read-only, I/O error, corruption); None for anything else (a busy lock is not a storage failure).

    The exceptions it was raised from count too: SQLite rolls a transaction back by itself on
    SQLITE_FULL, so an explicit ROLLBACK then fails with "no transaction is active" and hides the cause.
    """
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        reason = _one_problem(current)
        if reason:
            return reason
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _one_problem(exc: BaseException) -> str | None:
    found = classify(exc)
    if found is None or found[0] == "locked":  # a lock only waits: trading goes on
        return None
    return found[1]


def stopped_notice(reason: str, at: datetime | None = None) -> Notice:
    """The notice the wall shows when trading stops because nothing can be recorded."""
    return Notice("error", STOPPED_PREFIX + reason, at=at)


# --- daily backup -----------------------------------------------------------------------------

@dataclass(frozen=True)
class BackupResult:
    """One daily check and backup attempt: the file written (or the error) and how long it took.

    ``damaged`` is the sentence to stop trading with when system.db itself failed its check."""

    path: Path | None
    duration_ms: float
    pruned: tuple[Path, ...] = ()
    error: str | None = None
    damaged: str | None = None


@dataclass
class DailyBackup:
    """Once per real UTC day: ``PRAGMA quick_check`` of system.db, then a backup into the backups folder
    (itself checked, stamped with ``mode``), keeping 14 daily and 12 monthly copies.

    Called between cycles on the engine thread with the engine's own connection (the backup API
    copies committed pages, WAL included, without stopping anyone). A system.db that fails its check is
    not backed up: a damaged copy must never push the good ones out.
    """

    system: SystemStore
    folder: Path
    keep: int = KEEP_BACKUPS
    now: Callable[[], datetime] = utc_now
    mode: str | None = None
    _done: date | None = field(default=None, init=False)
    _retry_at: float = field(default=0.0, init=False)

    def due(self) -> bool:
        """True when today's backup has not been written (cheap: one stat at most)."""
        today = self.now().astimezone(timezone.utc).date()
        if self._done == today or time.monotonic() < self._retry_at:
            return False
        if (Path(self.folder) / backup_name(today)).exists():
            self._done = today  # taken earlier today (e.g. before a restart)
            return False
        return True

    def run_if_due(self) -> BackupResult | None:
        """Take today's backup if it is missing; None when there was nothing to do."""
        if not self.due():
            return None
        return self.run()

    def run(self) -> BackupResult:
        """Write today's backup now (replacing one of the same day) and prune old ones. Never raises
        for storage errors: a failed backup must not stop trading; it is logged and retried later."""
        today = self.now().astimezone(timezone.utc).date()
        dest = Path(self.folder) / backup_name(today)
        t0 = time.perf_counter()
        # A fresh connection reads the pages from the file, not from the engine connection's cache.
        ok, detail = file_integrity(self.system.path, quick=True)
        if not ok:
            ms = (time.perf_counter() - t0) * 1000
            self._retry_at = time.monotonic() + BACKUP_RETRY_S
            message = damaged_system_message(DataPaths.for_folder(self.system.path.parent), detail)
            log.error("daily check of system.db failed: %s", message)
            return BackupResult(None, ms, error=f"system.db failed its check: {detail}", damaged=message)
        try:
            backup_connection(self.system.connection, dest, mode=self.mode)
            pruned = tuple(prune_backups(self.folder, self.keep))
        except (sqlite3.Error, OSError, StorageUnavailable, BackupError) as exc:
            ms = (time.perf_counter() - t0) * 1000
            self._retry_at = time.monotonic() + BACKUP_RETRY_S
            log.error("daily backup of system.db to %s failed: %s", dest, exc)
            return BackupResult(None, ms, error=f"{type(exc).__name__}: {exc}")
        ms = (time.perf_counter() - t0) * 1000
        self._done = today
        log.info("backed up system.db to %s in %.0f ms%s", dest, ms,
                 f"; removed {len(pruned)} old backup(s)" if pruned else "")
        return BackupResult(dest, ms, pruned)


# --- the file the engine writes ------------------------------------------------------------------

MIN_DB_BYTES = 4096  # a migrated system.db is several pages; anything smaller was cut short


class SystemFileWatch:
    """Whether system.db is still the file the engine opened: same device and inode, still linked, of a
    sane size. A deleted or replaced file would take every fill recorded after it into nowhere."""

    def __init__(self, path: Path):
        self.path = Path(path)
        stat = os.stat(self.path)
        self._identity = (stat.st_dev, stat.st_ino)

    def problem(self) -> str | None:
        """Why trading must stop, or None while the file is the one opened (one stat call)."""
        advice = f"restore the newest backup (`autotrader restore`) or put the file back ({self.path}), then restart"
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return f"system.db was deleted while AutoTrader ran — {advice}"
        except OSError as exc:
            return f"system.db cannot be checked ({exc.strerror}) — check the data disk, then restart"
        if (stat.st_dev, stat.st_ino) != self._identity:
            return "system.db was replaced by another file while AutoTrader ran — restart to use it"
        if stat.st_size < MIN_DB_BYTES or stat.st_size % 512:
            return f"system.db was cut to {stat.st_size} bytes while AutoTrader ran — {advice}"
        return None
@dataclass
class DailySimPrune:
    """Deletes simulated bars older than ``keep_days`` once per real UTC day (real bars never).

    The sim market writes a ticker-year of synthetic minutes (about 7.5 MB per ticker) that nobody
    needs after a while; without this stocks.db grows for as long as the wall runs. Called between
    cycles on the engine thread with the engine's own connection.
    """

    market: MarketStore
    keep_days: int = 365
    now: Callable[[], datetime] = utc_now
    _done: date | None = field(default=None, init=False)

    def run_if_due(self) -> int | None:
        """Prune if today's pass has not run; bars deleted, or None when there was nothing to do.
        A storage error is logged and retried the next day: pruning must never stop trading."""
        now = self.now().astimezone(timezone.utc)
        if self._done == now.date():
            return None
        self._done = now.date()
        cutoff = int(now.timestamp()) - self.keep_days * 86_400
        t0 = time.perf_counter()
        try:
            deleted = self.market.prune_simulated(cutoff)
        except (sqlite3.Error, OSError, StorageUnavailable) as exc:
            log.error("pruning simulated bars older than %d days failed: %s", self.keep_days, exc)
            return None
        if deleted:
            log.info("pruned %d simulated bar(s) older than %d days in %.0f ms", deleted, self.keep_days,
                     (time.perf_counter() - t0) * 1000)
        return deleted


# --- health figures -----------------------------------------------------------------------------

def database_bytes(path: Path) -> int:
    """Size of a database on disk, its ``-wal`` included (0 if absent)."""
    total = 0
    for candidate in (Path(path), Path(f"{path}-wal")):
        try:
            total += candidate.stat().st_size
        except OSError:
            pass
    return total


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 if absent)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def free_bytes(path: Path) -> int | None:
    """Free space on the file system holding ``path`` (its nearest existing parent); None if unknown."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _lines_backwards(path: Path) -> Generator[bytes, None, None]:
    """The file's lines, last first, reading blocks from the end (only as far as the caller goes)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        pos = handle.tell()
        tail = b""
        while pos > 0:
            step = min(_LOG_BLOCK, pos)
            pos -= step
            handle.seek(pos)
            lines = (handle.read(step) + tail).split(b"\n")
            tail = lines[0]  # may be the end of a line that starts in the previous block
            yield from reversed(lines[1:])
        yield tail


def count_errors_today(log_dir: Path, today: date | None = None) -> int:
    """ERROR (and CRITICAL) lines logged on the UTC day ``today`` in engine/stream/ui logs.

    Reads each current log file from its end and stops at the first line of an earlier day, so a
    large log costs only today's part. Traceback lines (no time stamp) are skipped.
    """
    today = today or utc_now().date()
    prefix = today.isoformat().encode() + b"T"
    count = 0
    for filename in AREA_FILES.values():
        path = Path(log_dir) / filename
        lines = _lines_backwards(path)
        try:
            for line in lines:
                if not _DATED_LINE.match(line):
                    continue
                if line.startswith(prefix):
                    parts = line.split(b" ", 2)
                    if len(parts) > 1 and parts[1] in _ERROR_LEVELS:
                        count += 1
                elif line[:10] < prefix[:10]:
                    break
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
        finally:
            lines.close()  # closes the file when the scan stopped early
    return count


def health_report(paths: DataPaths, *, now: datetime | None = None) -> dict:
    """Plain JSON-able health figures of a data folder: last backup, database sizes, free disk, log
    folder size and today's error count (sizes in bytes, times as UTC text)."""
    now = now or utc_now()
    newest = newest_backup(paths.backup_dir)
    return {
        "last_backup": None if newest is None else {"file": str(newest.path), "time": utc_text(newest.modified),
                                                    "bytes": newest.size},
        "databases": {"system.db": database_bytes(paths.system_db), "stocks.db": database_bytes(paths.stocks_db)},
        "free_disk_bytes": free_bytes(paths.root),
        "log_bytes": folder_bytes(paths.log_dir),
        "errors_today": count_errors_today(paths.log_dir, now.astimezone(timezone.utc).date()),
    }
