"""Storage safety on the real engine: start-up integrity check, daily backup, a full or read-only data
folder stops trading without losing a fill (reconciled after restart), and the health figures."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.host.thread import EngineHost, EngineStartError
from app.storage.errors import StorageUnavailable
from app.engine.system.maintenance import (DailyBackup, DatabaseDamaged, check_at_start, count_errors_today,
                                    health_report, storage_problem)
from app.engine.system.data_folder import DataPaths
from app.engine.system.settings import Settings
from app.engine.marketdata.clock import SimClock
from app.storage.backup import backup_name, check_backup, list_backups
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource
from app.storage.sim_book_store import SimBookStore
from app.storage.system_store import SystemStore
from tests.engine.crash_child import FLIPPER_SOURCE, SimRig, write_algorithm
from tests.engine.test_orchestrator import engine_call, seed_cards

FULL = "trading stopped: the data disk is full — free space and restart"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def algos(tmp_path: Path) -> Path:
    return write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)


def corrupt(path: Path) -> None:
    """Overwrite the middle of a database file with garbage (after checkpointing it into the file)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(min(8192, size // 3)))


def big_system_db(path: Path) -> None:
    store = SystemStore(path)
    card = store.create_instance("AAPL", "sma_crossover", 10_000.0)
    for i in range(3000):
        store.record_buy(card, 1, 100.0, client_order_id=f"c{i}")
    store.close()


def big_stocks_db(path: Path) -> None:
    market = MarketStore(path)
    start = int(utc(2024, 6, 4, 13, 30).timestamp())
    for symbol in ("AAPL", "MSFT", "NVDA"):
        market.upsert_bars(symbol, [Bar(start + 60 * i, 10.0, 11.0, 9.0, 10.5, 100) for i in range(2000)],
                           source=BarSource.ALPACA)
    market.close()


# --- classification -----------------------------------------------------------------------------

def test_storage_problem_names_real_sqlite_failures_and_ignores_the_rest(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (v)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as full:
        for _ in range(100):
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 1000,))
    assert storage_problem(full.value) == "the data disk is full — free space and restart"
    conn.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlite3.OperationalError) as readonly:
        conn.execute("INSERT INTO t VALUES (1)")
    assert storage_problem(readonly.value) == "the data folder is read-only — make it writable and restart"
    conn.execute("PRAGMA query_only = OFF")
    # A lock held by another writer is not a storage failure: trading goes on.
    other = sqlite3.connect(tmp_path / "x.db", isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("BEGIN IMMEDIATE")
    conn.execute("ROLLBACK")
    assert storage_problem(locked.value) is None
    with pytest.raises(sqlite3.OperationalError) as syntax:
        conn.execute("SELEC 1")
    assert storage_problem(syntax.value) is None
    assert storage_problem(OSError(28, "No space left on device")).startswith("the data disk is full")
    assert storage_problem(ValueError("x")) is None
    other.close()
    conn.close()


# --- start-up check -----------------------------------------------------------------------------

def test_check_at_start_refuses_a_damaged_system_db_and_names_the_newest_backup(tmp_path):
    paths = DataPaths.for_folder(tmp_path / "sim").create()
    assert check_at_start(paths) == []  # nothing yet: nothing to check
    big_system_db(paths.system_db)
    assert check_at_start(paths) == []
    corrupt(paths.system_db)
    with pytest.raises(DatabaseDamaged) as no_backup:
        check_at_start(paths)
    assert str(no_backup.value).startswith("system.db is damaged: ")
    assert f"There is no backup in {paths.backup_dir}" in str(no_backup.value)
    for day in (3, 4):
        (paths.backup_dir / backup_name(date(2024, 6, day))).write_bytes(b"")
    with pytest.raises(DatabaseDamaged) as damaged:
        check_at_start(paths)
    newest = paths.backup_dir / "system-2024-06-04.db"
    assert (f"Restore a backup with `autotrader restore {newest}` or move the file away "
            f"({paths.system_db}) to start empty") in str(damaged.value)
    assert paths.system_db.exists()  # system.db is never moved by the engine


def test_damaged_stocks_db_is_moved_aside_and_a_fresh_one_starts(tmp_path):
    paths = DataPaths.for_folder(tmp_path / "sim").create()
    big_stocks_db(paths.stocks_db)
    corrupt(paths.stocks_db)
    notices = check_at_start(paths, now=lambda: utc(2024, 6, 5, 8, 0))
    aside = paths.root / "stocks.db.damaged-20240605T080000Z"
    assert aside.exists() and not paths.stocks_db.exists()
    (notice,) = notices
    assert notice.kind == "error" and "stocks.db was damaged" in notice.message
    assert aside.name in notice.message and "fetched or generated again" in notice.message
    fresh = MarketStore(paths.stocks_db)
    try:
        assert fresh.integrity_check() == (True, "ok") and fresh.latest_bar("AAPL") is None
    finally:
        fresh.close()
    assert check_at_start(paths) == []


def test_engine_refuses_to_start_on_a_damaged_system_db(tmp_path, qtbot):
    big_system_db(tmp_path / "sim" / "system.db")
    corrupt(tmp_path / "sim" / "system.db")
    with pytest.raises(EngineStartError) as err:
        EngineHost.for_tests(tmp_path)
    text = str(err.value)
    assert "system.db is damaged" in text and "autotrader restore" not in text  # no backup yet
    assert "move the file away" in text


def test_engine_starts_on_a_damaged_stocks_db_and_says_so(tmp_path, qtbot):
    paths = DataPaths.for_folder(tmp_path / "sim").create()
    big_stocks_db(paths.stocks_db)
    corrupt(paths.stocks_db)
    settings = Settings(data_root=tmp_path, sim_forced=True)
    host = EngineHost(settings, SimClock(utc(2024, 6, 4, 14, 0), speed=60))
    notices = []
    host.signals.notice.connect(notices.append)
    host.start()
    try:
        qtbot.waitUntil(lambda: any("stocks.db was damaged" in n.message for n in notices), timeout=5000)
        assert any(p.name.startswith("stocks.db.damaged-") for p in paths.root.iterdir())
    finally:
        host.stop()


# --- daily backup -------------------------------------------------------------------------------

def test_daily_backup_once_per_utc_day_keeping_the_newest_14_and_the_months_first(tmp_path):
    store = SystemStore(tmp_path / "system.db")
    today = [utc(2024, 6, 1, 23, 59)]
    backup = DailyBackup(store, tmp_path / "backups", now=lambda: today[0])
    try:
        first = backup.run_if_due()
        assert first.path == tmp_path / "backups" / "system-2024-06-01.db" and first.error is None
        assert backup.run_if_due() is None  # once a day
        store.set_config("day", "2")
        today[0] = utc(2024, 6, 2, 0, 0, 30)
        second = backup.run_if_due()
        assert second.path.name == "system-2024-06-02.db" and second.duration_ms < 1000
        for day in range(3, 18):
            today[0] = utc(2024, 6, day, 12)
            assert backup.run_if_due() is not None
        names = [b.path.name for b in list_backups(tmp_path / "backups")]
        # The newest 14 days, plus the month's first backup (monthly retention).
        assert names == ["system-2024-06-01.db"] + [f"system-2024-06-{d:02d}.db" for d in range(4, 18)]
        assert check_backup(tmp_path / "backups" / names[-1]).instances == 0
        # A restarted engine finds today's file and does not take another.
        again = DailyBackup(store, tmp_path / "backups", now=lambda: today[0])
        assert again.run_if_due() is None
    finally:
        store.close()


def test_a_failed_backup_is_reported_and_retried_later_not_every_minute(tmp_path):
    store = SystemStore(tmp_path / "system.db")
    (tmp_path / "backups").write_text("a file where the folder should be")
    backup = DailyBackup(store, tmp_path / "backups", now=lambda: utc(2024, 6, 4, 12))
    try:
        result = backup.run_if_due()
        assert result.path is None and result.error
        assert backup.run_if_due() is None  # not again at the next cycle
    finally:
        store.close()


def test_engine_backs_up_at_start_and_status_reports_health(tmp_path, qtbot):
    host = EngineHost.for_tests(tmp_path, speed=60)
    try:
        status = engine_call(host, host.service.status)
    finally:
        host.stop()
    today = datetime.now(timezone.utc).date()
    backups = list_backups(tmp_path / "sim" / "backups")
    assert [b.day for b in backups] == [today]
    assert status["last_backup"]["file"] == str(backups[0].path)
    assert status["databases"]["system.db"] > 0 and status["free_disk_bytes"] > 0
    assert set(status) >= {"last_backup", "databases", "free_disk_bytes", "log_bytes", "errors_today"}


# --- a disk that can no longer record -----------------------------------------------------------

def fill_system_db(parts) -> list[str]:
    """On the engine thread: cap system.db at its size, then use every byte left, so the next row
    recorded needs a new page (SQLITE_FULL). Returns the open orders' client ids at that moment."""
    system = parts.system
    conn = system.connection
    dummy = system.create_instance("ZZZ", "flipper", 1.0)
    system.stop_instance(dummy)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    for size in (2000, 200, 20, 0):
        try:
            while True:
                conn.execute("INSERT INTO transactions (algorithm_id, type, shares, price, timestamp) "
                             "VALUES (?, 'buy', 1, 1.0, ?)", (dummy, "2024-06-04T00:00:00Z" + " " * size))
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc)
    return [o.client_order_id for o in system.open_orders()]


def assert_every_broker_fill_recorded_once(root: Path) -> None:
    book = sqlite3.connect(root / "sim_broker.db")
    filled = {row[0]: row[1] for row in book.execute(
        "SELECT client_order_id, filled_qty FROM sim_orders WHERE status = 'filled'")}
    book.close()
    system = SystemStore(root / "system.db")
    try:
        recorded = [t for t in system.all_transactions() if t.client_order_id]
    finally:
        system.close()
    assert sorted(t.client_order_id for t in recorded) == sorted(filled)  # once each, none extra
    assert all(t.shares == filled[t.client_order_id] for t in recorded)


def test_full_disk_stops_trading_and_the_fill_is_recorded_once_after_restart(tmp_path, algos, qtbot):
    start = utc(2024, 6, 4, 13, 29)
    (card,) = seed_cards(tmp_path, algos, start, [("AAPL", "flipper", 10_000, {})])
    host = EngineHost(Settings(data_root=tmp_path, sim_forced=True, algorithm_dirs=(algos,)),
                      SimClock(start, speed=300))
    notices = []
    host.signals.notice.connect(notices.append)
    host.start()
    try:
        qtbot.waitUntil(lambda: len(host.orchestrator.reports) >= 3, timeout=20_000)
        (pending,) = engine_call(host, fill_system_db, host.orchestrator.parts)
        qtbot.waitUntil(lambda: host.orchestrator.trading_stopped is not None, timeout=10_000)
        cycles = len(host.orchestrator.reports)
        qtbot.wait(1000)  # ~5 simulated minutes: no cycle runs, nothing is sent
        assert len(host.orchestrator.reports) == cycles
        assert engine_call(host, host.service.cards)[0].instance_id == card  # the engine still answers
    finally:
        host.stop()
    qtbot.wait(50)
    assert host.orchestrator.trading_stopped == "the data disk is full — free space and restart"
    assert [n.message for n in notices if n.kind == "error"] == [FULL]

    root = tmp_path / "sim"
    book = SimBookStore(root / "sim_broker.db")
    system = SystemStore(root / "system.db")
    try:
        assert book.get_order(pending).status == "filled"  # the fill happened at the broker ...
        assert system.get_order(pending).status == "submitted"  # ... and could not be recorded
        assert [t for t in system.all_transactions() if t.client_order_id == pending] == []
        # Nothing was sent after the failure: the newest journal row is the unrecorded one.
        assert system.orders_for(card)[-1].client_order_id == pending
    finally:
        book.close()
        system.close()

    # Space is back (a fresh connection has no page cap): the restart reconciles the fill exactly once.
    again = EngineHost(Settings(data_root=tmp_path, sim_forced=True, algorithm_dirs=(algos,)),
                       SimClock(start + timedelta(minutes=10), speed=1))
    again.start()
    again.stop()
    system = SystemStore(root / "system.db")
    try:
        assert system.get_order(pending).status == "filled"
        assert len([t for t in system.all_transactions() if t.client_order_id == pending]) == 1
    finally:
        system.close()
    assert_every_broker_fill_recorded_once(root)


def test_read_only_data_fails_the_record_not_the_fill_and_restart_reconciles_once(tmp_path, algos):
    rig = SimRig(tmp_path, utc(2024, 6, 4, 13, 59), algorithm_dirs=(algos,))
    try:
        card = rig.add("AAPL", "flipper", 5_000)
        rig.step(utc(2024, 6, 4, 14, 0))
        (order,) = rig.system.open_orders()
        rig.system.connection.execute("PRAGMA query_only = ON")  # as if the folder became read-only
        with pytest.raises(StorageUnavailable) as failed:  # sorted at the storage boundary
            rig.step(utc(2024, 6, 4, 14, 1))
        assert storage_problem(failed.value) == "the data folder is read-only — make it writable and restart"
        assert rig.parts.broker.get_order(order.client_order_id).status == "filled"
        assert rig.system.get_transactions(card) == []
    finally:
        rig.close()
    again = SimRig(tmp_path, utc(2024, 6, 4, 14, 1, 2), algorithm_dirs=(algos,))
    try:
        fills = again.start()
        assert [f.client_order_id for f in fills] == [order.client_order_id]
        assert again.start() == []  # a second reconcile records nothing more
        assert [t.client_order_id for t in again.system.get_transactions(card)] == [order.client_order_id]
    finally:
        again.close()
    assert_every_broker_fill_recorded_once(tmp_path / "sim")


# --- health figures -----------------------------------------------------------------------------

def test_errors_today_counts_only_todays_error_lines(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    yesterday = "2024-06-03T23:59:59.000Z ERROR autotrader.engine: old\n"
    today = ("2024-06-04T00:00:01.000Z INFO autotrader.engine: fine\n"
             "2024-06-04T09:00:00.000Z ERROR autotrader.engine: cycle failed\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1\n"
             "2024-06-04T09:00:01.000Z WARNING autotrader.engine: ERROR in the text is not a level\n"
             "2024-06-04T09:00:02.000Z CRITICAL autotrader.engine: worse\n")
    (logs / "engine.log").write_text(yesterday * 3 + today)
    (logs / "stream.log").write_text("2024-06-04T10:00:00.000Z ERROR autotrader.stream: dropped")  # no newline
    (logs / "ui.log").write_text("")
    assert count_errors_today(logs, date(2024, 6, 4)) == 3
    assert count_errors_today(logs, date(2024, 6, 3)) == 3 + 0  # the day before: its three lines
    assert count_errors_today(tmp_path / "none", date(2024, 6, 4)) == 0


def test_errors_today_reads_only_the_end_of_a_big_log(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    old = b"2024-06-03T12:00:00.000Z ERROR autotrader.engine: yesterday's noise\n" * 400_000  # ~28 MB
    (logs / "engine.log").write_bytes(old + b"2024-06-04T00:00:05.000Z ERROR autotrader.engine: new\n")
    t0 = time.perf_counter()
    assert count_errors_today(logs, date(2024, 6, 4)) == 1
    assert time.perf_counter() - t0 < 0.05  # a full read of 28 MB takes several times longer


def test_health_report_figures(tmp_path):
    paths = DataPaths.for_folder(tmp_path / "paper").create()
    SystemStore(paths.system_db).close()
    (paths.log_dir / "engine.log").write_text("2024-06-04T09:00:00.000Z ERROR x: y\n" + "z" * 1000)
    (paths.backup_dir / "system-2024-06-03.db").write_bytes(b"a")
    (paths.backup_dir / "system-2024-06-04.db").write_bytes(b"bb")
    report = health_report(paths, now=utc(2024, 6, 4, 18))
    assert report["last_backup"]["file"] == str(paths.backup_dir / "system-2024-06-04.db")
    assert report["last_backup"]["bytes"] == 2 and report["last_backup"]["time"].endswith("Z")
    assert report["databases"]["system.db"] >= paths.system_db.stat().st_size > 0
    assert report["databases"]["stocks.db"] == 0
    assert report["log_bytes"] == (paths.log_dir / "engine.log").stat().st_size
    assert report["errors_today"] == 1 and report["free_disk_bytes"] > 0


def test_kiosk_holds_the_trading_stopped_banner(qtbot):
    from app.engine.events import AccountSummary, Notice
    from app.engine.system.maintenance import stopped_notice
    from app.ui.kiosk_window import KioskWindow
    from decimal import Decimal

    window = KioskWindow(None, None, None, windowed=True)
    qtbot.addWidget(window)
    window.on_notice(Notice("error", "engine error: something else"))
    assert not window.halt_banner.isVisibleTo(window)
    window.on_notice(stopped_notice("the data disk is full — free space and restart"))
    assert window.halt_banner.isVisibleTo(window)
    assert window.halt_banner.text() == FULL.upper()
    window.on_account(AccountSummary("sim", Decimal(100), Decimal(0), halted=False))
    assert window.halt_banner.isVisibleTo(window)  # an account update does not hide it
    assert FULL in window.notice_bar.text


def test_the_daily_sim_prune_runs_once_a_day_on_the_engine_clock(tmp_path: Path) -> None:
    from app.engine.system.maintenance import DailySimPrune

    day = 86_400
    now = [utc(2024, 6, 4, 15, 0)]
    start = int(utc(2023, 6, 1, 14, 30).timestamp())
    with MarketStore(tmp_path / "stocks.db") as market:
        # One bar a day for 400 days: simulated for SIMU, fetched from Alpaca for REAL.
        market.upsert_bars("SIMU", [Bar(start + k * day, 10, 11, 9, 10, 5) for k in range(400)],
                           source=BarSource.SIMULATED)
        market.upsert_bars("REAL", [Bar(start + k * day, 10, 11, 9, 10, 5) for k in range(400)],
                           source=BarSource.ALPACA)
        prune = DailySimPrune(market, keep_days=30, now=lambda: now[0])
        deleted = prune.run_if_due()
        cutoff = int(now[0].timestamp()) - 30 * day
        assert deleted == sum(1 for k in range(400) if start + k * day < cutoff) > 0
        assert min(b.ts for b in market.bars_between("SIMU", 0, 2**40)) >= cutoff
        assert market.bar_count("REAL") == 400
        now[0] += timedelta(hours=5)
        assert prune.run_if_due() is None  # once a day
        now[0] += timedelta(days=1)
        assert prune.run_if_due() == 1  # the next day takes the next old bar


def test_the_sim_bar_age_is_a_setting_with_a_clear_message() -> None:
    from app.engine.system.settings import SettingsError, load_settings

    assert load_settings({}, dotenv_files=[]).sim_bars_keep_days == 365
    assert load_settings({"AUTOTRADER_SIM_BARS_KEEP_DAYS": "90"}, dotenv_files=[]).sim_bars_keep_days == 90
    for bad in ("0", "ninety", "-5"):
        with pytest.raises(SettingsError, match="AUTOTRADER_SIM_BARS_KEEP_DAYS"):
            load_settings({"AUTOTRADER_SIM_BARS_KEEP_DAYS": bad}, dotenv_files=[])
