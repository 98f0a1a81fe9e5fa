"""Backups of system.db with the SQLite backup API, validation of a backup file, restore and pruning."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from app.storage.backup import (BackupError, backup_connection, backup_name, check_backup, file_integrity,
                                list_backups, move_aside, newest_backup, peek_config, prune_backups,
                                restore_backup)
from app.storage.system_store import SystemStore


def seeded_store(path: Path, cards: int = 2, fills: int = 3) -> SystemStore:
    store = SystemStore(path)
    for n in range(cards):
        card = store.create_instance("AAPL", "sma_crossover", 10_000.0)
        for i in range(fills):
            store.record_buy(card, 1, 100.0 + i, client_order_id=f"c{n}-{i}")
    store.set_config("marker", "before")
    return store


def corrupt(path: Path) -> None:
    """Overwrite the middle of the file: pages of the b-trees become garbage."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(min(4096, size // 3)))


def test_backup_of_an_open_wal_database_is_a_consistent_single_file(tmp_path):
    store = seeded_store(tmp_path / "system.db")
    try:
        # Committed but not yet checkpointed: these pages live only in system.db-wal.
        assert (tmp_path / "system.db-wal").stat().st_size > 0
        dest = backup_connection(store.connection, tmp_path / "backups" / backup_name(date(2024, 6, 4)))
        store.record_sell(1, 1, 120.0, client_order_id="after")  # later writes do not reach the backup
    finally:
        store.close()
    assert dest == tmp_path / "backups" / "system-2024-06-04.db"
    assert not Path(f"{dest}-wal").exists() and not dest.with_name(dest.name + ".partial").exists()
    summary = check_backup(dest)
    assert (summary.instances, summary.running, summary.transactions, summary.orders) == (2, 2, 6, 0)
    copy = SystemStore(dest)
    try:
        assert copy.get_config("marker") == "before"
        assert [t.client_order_id for t in copy.get_transactions(1, oldest_first=True)] == ["c0-0", "c0-1", "c0-2"]
    finally:
        copy.close()


def test_listing_newest_and_pruning_keep_the_newest_by_day(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    first = date(2024, 5, 1)
    for i in range(16):
        (folder / backup_name(first + timedelta(days=i))).write_bytes(b"x")
    (folder / "notes.txt").write_text("not a backup")
    (folder / "system-2024-13-45.db").write_bytes(b"bad date")
    assert [b.day for b in list_backups(folder)] == [first + timedelta(days=i) for i in range(16)]
    assert newest_backup(folder).path.name == "system-2024-05-16.db"
    removed = prune_backups(folder, keep=14, monthly=0)
    assert sorted(p.name for p in removed) == ["system-2024-05-01.db", "system-2024-05-02.db"]
    assert len(list_backups(folder)) == 14 and (folder / "notes.txt").exists()
    assert prune_backups(folder, keep=14, monthly=0) == []
    assert list_backups(tmp_path / "missing") == [] and newest_backup(tmp_path / "missing") is None


def test_check_backup_refuses_damaged_foreign_and_too_new_files(tmp_path):
    with pytest.raises(BackupError, match="no backup file"):
        check_backup(tmp_path / "nope.db")
    text = tmp_path / "text.db"
    text.write_text("hello, I am not a database" * 200)
    with pytest.raises(BackupError, match="text.db"):
        check_backup(text)

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE bars (x)")
    conn.commit()
    conn.close()
    with pytest.raises(BackupError, match="not a system.db backup: it has no algorithm_instances"):
        check_backup(other)

    newer = tmp_path / "newer.db"
    seeded_store(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(BackupError, match="schema version 99"):
        check_backup(newer)

    # A large enough file so that the damage lands in table pages, not only free space.
    damaged = tmp_path / "damaged.db"
    seeded_store(damaged, cards=30, fills=60).close()
    conn = sqlite3.connect(damaged)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    corrupt(damaged)
    with pytest.raises(BackupError, match="damaged.db"):
        check_backup(damaged)
    assert file_integrity(damaged)[0] is False
    assert file_integrity(text) == (False, "file is not a database")


def test_restore_keeps_the_current_file_with_its_wal_and_copies_the_backup_in(tmp_path):
    target = tmp_path / "system.db"
    store = seeded_store(target)
    backup = backup_connection(store.connection, tmp_path / "backups" / "system-2024-06-04.db")
    store.set_config("marker", "after")
    store.record_sell(1, 1, 130.0, client_order_id="late")
    store.close()
    before = backup.read_bytes()

    kept = restore_backup(backup, target, "20240605T101500Z")
    assert kept == tmp_path / "system.db.before-restore-20240605T101500Z"
    assert backup.read_bytes() == before  # the backup itself is never changed
    restored = SystemStore(target)
    try:
        assert restored.get_config("marker") == "before"
        assert len(restored.all_transactions()) == 6
        assert restored.integrity_check() == (True, "ok")
    finally:
        restored.close()
    old = SystemStore(kept)  # the kept file opens with everything it had, WAL included
    try:
        assert old.get_config("marker") == "after" and len(old.all_transactions()) == 7
    finally:
        old.close()
    assert not (tmp_path / "system.db.restoring").exists()


def test_restore_refuses_a_bad_backup_and_changes_nothing(tmp_path):
    target = tmp_path / "system.db"
    seeded_store(target).close()
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\0" * 10_000)
    stat = target.stat()
    with pytest.raises(BackupError):
        restore_backup(bad, target, "x")
    assert target.stat().st_mtime_ns == stat.st_mtime_ns
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("system.db.")] == []  # nothing kept aside


def test_move_aside_and_peek_config(tmp_path):
    path = tmp_path / "stocks.db"
    store = seeded_store(path)
    store.close()
    assert peek_config(path, "marker") == "before" and peek_config(path, "nope") is None
    assert peek_config(tmp_path / "missing.db", "marker") is None
    assert not (tmp_path / "missing.db").exists()  # peeking never creates a file
    aside = move_aside(path, "damaged-20240605T000000Z")
    assert aside.name == "stocks.db.damaged-20240605T000000Z" and not path.exists()
    assert peek_config(aside, "marker") == "before"


def test_backup_time_of_a_year_sized_system_db(tmp_path):
    """A year of one-minute trading on 20 cards is ~40k fills: the backup must stay well under a second."""
    store = SystemStore(tmp_path / "system.db")
    try:
        cards = [store.create_instance("AAPL", "sma_crossover", 10_000.0) for _ in range(20)]
        conn = store.connection
        with conn:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO transactions (algorithm_id, type, shares, price, timestamp, client_order_id) "
                "VALUES (?, 'buy', 1, 100.0, '2024-06-04T14:30:00Z', ?)",
                ((cards[i % 20], f"x{i}") for i in range(40_000)))
        t0 = time.perf_counter()
        dest = backup_connection(conn, tmp_path / "b.db")
        elapsed = time.perf_counter() - t0
    finally:
        store.close()
    print(f"backup of {dest.stat().st_size / 1e6:.1f} MB took {elapsed * 1000:.0f} ms")  # a figure, not a limit
    assert check_backup(dest).transactions == 40_000
