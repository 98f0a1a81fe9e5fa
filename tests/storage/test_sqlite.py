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
