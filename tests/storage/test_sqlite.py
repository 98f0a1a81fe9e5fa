"""The connection settings every store shares."""

from __future__ import annotations

from app.storage.sqlite import BUSY_TIMEOUT_MS, CACHE_KIB, connect


def test_connections_use_wal_a_busy_timeout_and_a_bounded_page_cache(tmp_path):
    conn = connect(tmp_path / "x.db", shared=True)
    try:
        settings = {pragma: conn.execute(f"PRAGMA {pragma}").fetchone()[0]
                    for pragma in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous", "cache_size")}
    finally:
        conn.close()
    assert settings == {"journal_mode": "wal", "busy_timeout": BUSY_TIMEOUT_MS, "foreign_keys": 1,
                        "synchronous": 1, "cache_size": -CACHE_KIB}
    # A long-running process has a dozen connections: each cache must stay well under SQLite's 2 MB.
    assert CACHE_KIB <= 1024


def test_system_db_commits_are_fsynced_and_the_other_stores_stay_normal(tmp_path):
    from app.storage.market_store import MarketStore
    from app.storage.sim_book_store import SimBookStore
    from app.storage.system_store import SystemStore

    levels = {}
    for name, cls in (("system", SystemStore), ("stocks", MarketStore), ("sim_broker", SimBookStore)):
        with cls(tmp_path / f"{name}.db") as store:
            levels[name] = store.connection.execute("PRAGMA synchronous").fetchone()[0]
    assert levels == {"system": 2, "stocks": 1, "sim_broker": 1}  # 2 = FULL, 1 = NORMAL


def test_a_database_file_created_here_is_readable_by_its_owner_only(tmp_path):
    import os
    import stat

    conn = connect(tmp_path / "new.db")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    try:
        for name in ("new.db", "new.db-wal", "new.db-shm"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    finally:
        conn.close()


def test_synchronous_level_is_checked(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="synchronous"):
        connect(tmp_path / "x.db", synchronous="OFF")
