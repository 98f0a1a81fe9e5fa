"""Damage noticed while the engine runs: the daily quick_check, checked backup copies with retention,
and system.db deleted or replaced under a running engine."""

from __future__ import annotations

import os
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.marketdata.clock import SimClock
from app.engine.host.thread import EngineHost
from app.engine.system.maintenance import DailyBackup, SystemFileWatch
from app.engine.system.settings import Settings
from app.storage.backup import (DAMAGED_SUFFIX, BackupError, backup_connection, backup_mode, backup_name,
                                kept_backups, list_backups, prune_backups)
from app.storage.system_store import SystemStore
from tests.engine.crash_child import FLIPPER_SOURCE, SimRig, write_algorithm
from tests.engine.test_orchestrator import engine_call


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def algos(tmp_path: Path) -> Path:
    return write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)


def fill(store: SystemStore, rows: int = 3000) -> int:
    card = store.create_instance("AAPL", "buy_and_hold", 10_000.0)
    for i in range(rows):
        store.record_buy(card, 1, 100.0, client_order_id=f"seed-{i}")
    return card


def corrupt_pages(path: Path) -> None:
    """Fold the WAL into the file (other connections stay open) and overwrite two pages in its middle."""
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek((size // 2) // 4096 * 4096)
        handle.write(os.urandom(8192))
        handle.flush()
        os.fsync(handle.fileno())


# --- backups and retention ------------------------------------------------------------------------

def test_retention_keeps_14_daily_and_the_first_of_12_months(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    day = date(2023, 1, 1)
    while day <= date(2024, 6, 30):
        (folder / backup_name(day)).write_bytes(b"x")
        day += timedelta(days=1)
    (folder / ("system-2024-06-29.db" + DAMAGED_SUFFIX)).write_bytes(b"bad")
    removed = prune_backups(folder)
    kept = [b.day for b in list_backups(folder)]
    monthly = [date(2023, m, 1) for m in range(7, 13)] + [date(2024, m, 1) for m in range(1, 7)]
    assert kept == monthly + [date(2024, 6, d) for d in range(17, 31)]
    assert len(kept) == 26 and removed
    assert (folder / ("system-2024-06-29.db" + DAMAGED_SUFFIX)).exists()  # never counted, never deleted
    assert kept_backups(list_backups(folder)) == list_backups(folder)  # pruning again changes nothing


def test_a_backup_of_a_damaged_database_is_kept_aside_and_not_counted(tmp_path):
    db = tmp_path / "system.db"
    with SystemStore(db) as store:
        fill(store)
    corrupt_pages(db)
    folder = tmp_path / "backups"
    good = folder / backup_name(date(2024, 6, 3))
    folder.mkdir()
    conn = sqlite3.connect(db)
    try:
        with pytest.raises(BackupError, match="kept aside"):
            backup_connection(conn, folder / backup_name(date(2024, 6, 4)), mode="paper")
    finally:
        conn.close()
    assert (folder / ("system-2024-06-04.db" + DAMAGED_SUFFIX)).exists()
    assert list_backups(folder) == [] and not good.exists()


def test_a_backup_records_its_mode_and_is_owner_only(tmp_path):
    with SystemStore(tmp_path / "system.db") as store:
        fill(store, rows=3)
        dest = backup_connection(store.connection, tmp_path / "b" / backup_name(date(2024, 6, 4)), mode="paper")
        assert store.get_config("backup_mode") is None  # stamped in the copy only
    assert backup_mode(dest) == "paper"
    assert os.stat(dest).st_mode & 0o777 == 0o600


def test_the_daily_check_finds_a_corrupted_page_and_takes_no_backup(tmp_path):
    store = SystemStore(tmp_path / "system.db")
    try:
        fill(store)
        backup = DailyBackup(store, tmp_path / "backups", now=lambda: utc(2024, 6, 4, 12), mode="sim")
        corrupt_pages(store.path)
        result = backup.run_if_due()
        assert result.damaged and "system.db is damaged" in result.damaged
        assert result.path is None and list_backups(tmp_path / "backups") == []
    finally:
        store.close()


# --- while the engine runs --------------------------------------------------------------------------

def start_host(tmp_path: Path, algos: Path, start: datetime) -> tuple[EngineHost, list]:
    host = EngineHost(Settings(data_root=tmp_path, sim_forced=True, algorithm_dirs=(algos,)),
                      SimClock(start, speed=60))
    notices: list = []
    host.signals.notice.connect(notices.append)
    host.start()
    return host, notices


def test_a_page_corrupted_under_the_running_engine_is_found_by_the_daily_check(tmp_path, algos, qtbot):
    start = utc(2024, 6, 4, 14, 0)
    rig = SimRig(tmp_path, start, algorithm_dirs=(algos,))
    try:
        rig.add("AAPL", "flipper", 5_000)
        fill(rig.system)
    finally:
        rig.parts.close()
    host, notices = start_host(tmp_path, algos, start)
    try:
        qtbot.waitUntil(lambda: len(host.orchestrator.reports) >= 1, timeout=20_000)
        corrupt_pages(tmp_path / "sim" / "system.db")
        # The next real day comes: the check runs between two cycles.
        engine_call(host, setattr, host.orchestrator.backup, "now", lambda: utc(2099, 1, 2, 12))
        qtbot.waitUntil(lambda: host.orchestrator.trading_stopped is not None, timeout=20_000)
        assert "system.db is damaged" in host.orchestrator.trading_stopped
        assert any(n.kind == "error" and "system.db is damaged" in n.message for n in notices)
        cycles = len(host.orchestrator.reports)
        qtbot.wait(2500)  # over two simulated minutes: no further cycle
        assert len(host.orchestrator.reports) == cycles
    finally:
        host.stop()
    days = [b.day for b in list_backups(tmp_path / "sim" / "backups")]
    assert date(2099, 1, 2) not in days  # the damaged file was not backed up


def test_a_deleted_system_db_stops_trading_within_a_minute(tmp_path, algos, qtbot):
    start = utc(2024, 6, 4, 14, 0)
    rig = SimRig(tmp_path, start, algorithm_dirs=(algos,))
    try:
        rig.add("AAPL", "flipper", 5_000)
    finally:
        rig.parts.close()
    host, notices = start_host(tmp_path, algos, start)
    try:
        qtbot.waitUntil(lambda: len(host.orchestrator.reports) >= 1, timeout=20_000)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp_path / 'sim' / 'system.db'}{suffix}").unlink(missing_ok=True)
        qtbot.waitUntil(lambda: host.orchestrator.trading_stopped is not None, timeout=10_000)
        assert host.orchestrator.trading_stopped.startswith("system.db was deleted while AutoTrader ran")
        assert any(n.message.startswith("trading stopped: system.db was deleted") for n in notices)
        cycles = len(host.orchestrator.reports)
        qtbot.wait(2500)
        assert len(host.orchestrator.reports) == cycles
    finally:
        host.stop()


def test_the_file_watch_notices_a_replaced_or_truncated_file(tmp_path):
    db = tmp_path / "system.db"
    with SystemStore(db) as store:
        fill(store, rows=3)
    watch = SystemFileWatch(db)
    assert watch.problem() is None
    replacement = tmp_path / "other.db"
    replacement.write_bytes(db.read_bytes())
    os.replace(replacement, db)
    assert "replaced" in watch.problem()
    watch = SystemFileWatch(db)
    with open(db, "r+b") as handle:
        handle.truncate(1000)
    assert "cut to 1000 bytes" in watch.problem()
