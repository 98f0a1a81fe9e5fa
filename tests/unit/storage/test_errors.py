"""SQLite errors are sorted where they happen: environment problems get a sentence, bugs stay bugs."""

from __future__ import annotations

import os
import sqlite3

import pytest

from app.storage.errors import CANT_OPEN, DAMAGED, FULL, LOCKED, READONLY, StorageUnavailable
from app.storage.sqlite import connect, transaction


def small_db(tmp_path):
    conn = connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (v)")
    return conn


def test_a_full_disk_inside_a_write_is_a_sentence_with_the_sqlite_error_behind_it(tmp_path):
    conn = small_db(tmp_path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageUnavailable) as info:
        with transaction(conn):
            for _ in range(100):
                conn.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))
    assert str(info.value) == FULL and info.value.kind == "full" and info.value.stops_trading
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0  # rolled back whole


def test_a_read_only_folder_is_named(tmp_path):
    conn = small_db(tmp_path)
    conn.execute("PRAGMA query_only = ON")
    with pytest.raises(StorageUnavailable, match="read-only") as info:
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
    assert str(info.value) == READONLY


def test_a_lock_held_past_the_timeout_is_an_environment_problem_that_does_not_stop_trading(tmp_path):
    conn = small_db(tmp_path)
    other = connect(tmp_path / "x.db")
    other.execute("PRAGMA busy_timeout = 0")
    conn.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable) as info:
            with transaction(other):
                pass
    finally:
        conn.execute("ROLLBACK")
    assert str(info.value) == LOCKED and not info.value.stops_trading


def test_a_damaged_file_is_named_when_opened(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(StorageUnavailable) as info:
        connect(path)
    assert str(info.value) == DAMAGED


def test_a_missing_folder_for_a_read_only_open_is_named(tmp_path):
    with pytest.raises(StorageUnavailable) as info:
        connect(tmp_path / "nowhere" / "x.db", readonly=True)
    assert str(info.value) == CANT_OPEN


def test_bugs_are_reraised_unchanged(tmp_path):
    conn = small_db(tmp_path)
    with pytest.raises(sqlite3.OperationalError, match="syntax error"):
        with transaction(conn):
            conn.execute("SELEC 1")
    conn.execute("CREATE TABLE u (v UNIQUE)")
    conn.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError):
        with transaction(conn):
            conn.execute("INSERT INTO u VALUES (1)")
