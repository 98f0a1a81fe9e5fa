"""SystemStore on real SQLite files: seed semantics, schema constraints, the orders journal."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.storage.records import InstanceRecord, TransactionRecord
from app.storage.system_store import MIGRATIONS, StoreError, SystemStore

T0 = datetime(2024, 6, 4, 14, 30, 22, tzinfo=timezone.utc)


class FakeNow:
    """A settable clock (a real value, not a mock): what the engine's SimClock.now provides."""

    def __init__(self, moment: datetime = T0) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> FakeNow:
    return FakeNow()


@pytest.fixture
def store(tmp_path: Path, clock: FakeNow):
    with SystemStore(tmp_path / "system.db", now=clock) as s:
        yield s


# -- instances ---------------------------------------------------------------------------------

def test_display_name_format_uses_utc_now(store: SystemStore, clock: FakeNow) -> None:
    assert store.generate_display_name("NVDA", "sma_crossover") == "NVDA_sma_crossover_20240604_143022"
    clock.moment = datetime(2024, 6, 4, 16, 30, 22, tzinfo=timezone(timedelta(hours=2)))
    assert store.generate_display_name("NVDA", "sma_crossover") == "NVDA_sma_crossover_20240604_143022"


def test_create_and_get_instance(store: SystemStore) -> None:
    algo_id = store.create_instance("NVDA", "sma_crossover", 10_000, {"slow": 50, "fast": 20})
    assert store.get_instance(algo_id) == InstanceRecord(
        id=algo_id, display_name="NVDA_sma_crossover_20240604_143022",
        algorithm_type="sma_crossover", ticker="NVDA", initial_capital=10_000.0,
        status="running", created_at="2024-06-04T14:30:22Z", stopped_at=None,
        params_json='{"fast": 20, "slow": 50}', faulted_reason=None)
    assert json.loads(store.get_instance(algo_id).params_json) == {"fast": 20, "slow": 50}
    assert store.get_instance(999) is None
    assert store.create_instance("AAPL", "buy_hold", 5_000.5) == algo_id + 1
    assert store.get_instance(algo_id + 1).params_json == "{}"


@pytest.mark.parametrize("args, match", [
    (("nvda", "sma", 100), "ticker"),
    (("NVDA", "sma-x", 100), "algorithm type"),
    (("NVDA", "sma", 0), "positive amount"),
    (("NVDA", "sma", -5), "positive amount"),
    (("NVDA", "sma", float("nan")), "positive amount"),
    (("NVDA", "sma", 100, {"x": object()}), "JSON"),
])
def test_create_instance_rejects_bad_input(store: SystemStore, args, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        store.create_instance(*args)
    assert store.all_instances() == []


def test_soft_stop_keeps_the_row(store: SystemStore, clock: FakeNow) -> None:
    a = store.create_instance("NVDA", "sma", 1000)
    b = store.create_instance("AAPL", "sma", 1000)
    clock.moment = T0 + timedelta(hours=1)
    assert store.stop_instance(a) is True
    assert store.stop_instance(a) is False  # already stopped
    assert store.stop_instance(999) is False
    stopped = store.get_instance(a)
    assert (stopped.status, stopped.stopped_at) == ("stopped", "2024-06-04T15:30:22Z")
    assert [i.id for i in store.all_instances()] == [a, b]
    assert [i.id for i in store.all_instances("running")] == [b]
    assert [i.id for i in store.all_instances("stopped")] == [a]
    with pytest.raises(StoreError, match="running"):
        store.all_instances("paused")


def test_set_faulted(store: SystemStore) -> None:
    a = store.create_instance("NVDA", "sma", 1000)
    store.set_faulted(a, "ZeroDivisionError in run()")
    assert store.get_instance(a).faulted_reason == "ZeroDivisionError in run()"
    store.set_faulted(a, None)
    assert store.get_instance(a).faulted_reason is None
    with pytest.raises(StoreError, match="no card"):
        store.set_faulted(999, "x")


# -- transactions -----------------------------------------------------------------------------

def test_seed_example_transactions(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma_crossover", 10_000)
    store.record_buy(algo, 100, 150.50, timestamp="2024-06-04T14:30:00Z")
    store.record_buy(algo, 50, 145.25, timestamp="2024-06-04T14:31:00Z")
    store.record_sell(algo, 25, 155.75, timestamp="2024-06-04T14:32:00Z")
    newest_first = store.get_transactions(algo)
    assert [(t.type, t.shares, t.price, t.timestamp) for t in newest_first] == [
        ("sell", 25, 155.75, "2024-06-04T14:32:00Z"),
        ("buy", 50, 145.25, "2024-06-04T14:31:00Z"),
        ("buy", 100, 150.50, "2024-06-04T14:30:00Z"),
    ]
    assert store.get_transactions(algo, oldest_first=True) == newest_first[::-1]
    shares = sum(t.shares if t.type == "buy" else -t.shares for t in newest_first)
    assert shares == 125  # the seed's card example
    other = store.create_instance("AAPL", "sma", 1000)
    store.record_buy(other, 1, 200.0, timestamp="2024-06-04T14:29:00Z")
    assert store.get_transactions(other)[0].algorithm_id == other
    assert [t.timestamp for t in store.all_transactions()] == [
        "2024-06-04T14:29:00Z", "2024-06-04T14:30:00Z", "2024-06-04T14:31:00Z", "2024-06-04T14:32:00Z"]


def test_transaction_timestamp_defaults_to_now_and_is_normalised(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 1000)
    tid = store.record_buy(algo, 1, 10.0)
    tid2 = store.record_sell(algo, 1, 11.0, timestamp="2024-06-04T16:31:00+02:00")
    by_id = {t.id: t for t in store.get_transactions(algo)}
    assert by_id[tid] == TransactionRecord(tid, algo, "buy", 1, 10.0, "2024-06-04T14:30:22Z", None)
    assert by_id[tid2].timestamp == "2024-06-04T14:31:00Z"
    with pytest.raises(StoreError, match="UTC text"):
        store.record_buy(algo, 1, 10.0, timestamp="2024-06-04 14:30")
    with pytest.raises(StoreError, match="UTC text"):
        store.record_buy(algo, 1, 10.0, timestamp="yesterday")


@pytest.mark.parametrize("shares, price, match", [
    (0, 10.0, "share count"), (-3, 10.0, "share count"), (1.5, 10.0, "share count"),
    (True, 10.0, "share count"), (1, 0, "price"), (1, -1.0, "price"), (1, float("inf"), "price"),
])
def test_record_rejects_bad_numbers(store: SystemStore, shares, price, match: str) -> None:
    algo = store.create_instance("NVDA", "sma", 1000)
    with pytest.raises(StoreError, match=match):
        store.record_buy(algo, shares, price)
    assert store.all_transactions() == []


def test_record_for_missing_instance_is_refused(store: SystemStore) -> None:
    with pytest.raises(StoreError, match="no card with id 42"):
        store.record_sell(42, 1, 10.0)
    assert store.all_transactions() == []


def test_client_order_id_makes_a_fill_unrecordable_twice(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 1000)
    store.record_buy(algo, 1, 10.0, client_order_id="c-1")
    with pytest.raises(StoreError, match="already recorded"):
        store.record_buy(algo, 1, 10.0, client_order_id="c-1")
    store.record_buy(algo, 1, 10.0)
    store.record_buy(algo, 1, 10.0)  # NULL order ids never collide
    assert len(store.all_transactions()) == 3


def test_schema_itself_rejects_bad_rows(store: SystemStore) -> None:
    """The constraints hold even for SQL that bypasses the API's checks."""
    conn = store.connection
    algo = store.create_instance("NVDA", "sma", 1000)
    bad_statements = [
        ("INSERT INTO algorithm_instances (display_name, algorithm_type, ticker, initial_capital,"
         " created_at) VALUES ('x', 'sma', 'NVDA', 0, 'now')", ()),
        ("INSERT INTO algorithm_instances (display_name, algorithm_type, ticker, initial_capital,"
         " created_at) VALUES ('x', 'sma', 'NVDA', -10, 'now')", ()),
        ("UPDATE algorithm_instances SET status = 'paused' WHERE id = ?", (algo,)),
        ("INSERT INTO transactions (algorithm_id, type, shares, price, timestamp)"
         " VALUES (?, 'buy', 0, 10, 'now')", (algo,)),
        ("INSERT INTO transactions (algorithm_id, type, shares, price, timestamp)"
         " VALUES (?, 'buy', -1, 10, 'now')", (algo,)),
        ("INSERT INTO transactions (algorithm_id, type, shares, price, timestamp)"
         " VALUES (?, 'buy', 1, 0, 'now')", (algo,)),
        ("INSERT INTO transactions (algorithm_id, type, shares, price, timestamp)"
         " VALUES (?, 'short', 1, 10, 'now')", (algo,)),
        ("INSERT INTO transactions (algorithm_id, type, shares, price, timestamp)"
         " VALUES (999, 'buy', 1, 10, 'now')", ()),
        ("INSERT INTO orders (client_order_id, algorithm_id, symbol, side, shares, status,"
         " submitted_at) VALUES ('o', ?, 'NVDA', 'buy', 1, 'lost', 'now')", (algo,)),
        ("INSERT INTO orders (client_order_id, algorithm_id, symbol, side, shares, status,"
         " submitted_at) VALUES ('o', 999, 'NVDA', 'buy', 1, 'pending', 'now')", ()),
        ("INSERT INTO orders (client_order_id, algorithm_id, symbol, side, shares, status,"
         " submitted_at, filled_qty) VALUES ('o', ?, 'NVDA', 'buy', 1, 'pending', 'now', -1)", (algo,)),
    ]
    for sql, params in bad_statements:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(sql, params)
    assert [i.id for i in store.all_instances()] == [algo]
    assert store.get_instance(algo).status == "running"
    assert store.all_transactions() == [] and store.orders_for(algo) == []


def test_instances_are_never_deleted_by_the_api(store: SystemStore) -> None:
    public = [name for name in dir(store) if not name.startswith("_")]
    assert not [name for name in public if "delete" in name or "remove" in name]


# -- orders journal ---------------------------------------------------------------------------

def journal(store: SystemStore, algo: int, coid: str = "nvda-1-buy", shares: int = 10,
            side: str = "buy", at: str = "2024-06-04T14:31:02Z") -> bool:
    return store.journal_order(coid, algo, "NVDA", side, shares, at)


def test_journal_is_idempotent_and_tracks_submission(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 10_000)
    assert journal(store, algo) is True
    assert journal(store, algo, shares=99) is False  # same id: nothing changes
    order = store.get_order("nvda-1-buy")
    assert (order.status, order.shares, order.filled_qty, order.broker_order_id) == ("pending", 10, 0, None)
    assert store.mark_submitted("nvda-1-buy", "broker-abc") is True
    assert store.mark_submitted("nvda-1-buy", "broker-xyz") is False
    order = store.get_order("nvda-1-buy")
    assert (order.status, order.broker_order_id) == ("submitted", "broker-abc")
    assert store.get_order("missing") is None
    with pytest.raises(StoreError, match="no journaled order"):
        store.mark_submitted("missing", "b")


@pytest.mark.parametrize("kwargs, match", [
    ({"coid": ""}, "client order id"), ({"coid": "x" * 129}, "client order id"),
    ({"shares": 0}, "share count"), ({"side": "short"}, "buy' or 'sell"),
    ({"at": "not a time"}, "UTC text"),
])
def test_journal_rejects_bad_input(store: SystemStore, kwargs, match: str) -> None:
    algo = store.create_instance("NVDA", "sma", 10_000)
    with pytest.raises(StoreError, match=match):
        journal(store, algo, **kwargs)
    assert store.orders_for(algo) == []


def test_journal_for_missing_instance_is_refused(store: SystemStore) -> None:
    with pytest.raises(StoreError, match="no card"):
        journal(store, 7)


def test_record_fill_exactly_once(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 10_000)
    journal(store, algo)
    store.mark_submitted("nvda-1-buy", "b-1")
    tid = store.record_fill("nvda-1-buy", 10, 120.5, "2024-06-04T14:31:03Z", "filled")
    again = store.record_fill("nvda-1-buy", 10, 120.5, "2024-06-04T14:31:03Z", "filled")
    assert again == tid
    assert store.get_transactions(algo) == [
        TransactionRecord(tid, algo, "buy", 10, 120.5, "2024-06-04T14:31:03Z", "nvda-1-buy")]
    order = store.get_order("nvda-1-buy")
    assert (order.status, order.filled_qty, order.filled_avg_price, order.filled_at) == (
        "filled", 10, 120.5, "2024-06-04T14:31:03Z")
    assert store.open_orders() == []
    assert store.mark_final("nvda-1-buy", "failed", "late") is False  # a fill is never overwritten
    assert store.get_order("nvda-1-buy").status == "filled"


def test_partial_fill_records_the_filled_quantity_of_the_order_side(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 10_000)
    store.record_buy(algo, 10, 100.0, timestamp="2024-06-04T14:30:00Z")
    journal(store, algo, coid="s-1", side="sell", shares=8)
    tid = store.record_fill("s-1", 3, 101.0, "2024-06-04T14:31:05Z", "partial")
    txn = store.get_transactions(algo)[0]
    assert (txn.id, txn.type, txn.shares, txn.price, txn.client_order_id) == (tid, "sell", 3, 101.0, "s-1")
    assert store.get_order("s-1").status == "partial"


def test_zero_fill_closes_the_order_without_a_transaction(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 10_000)
    journal(store, algo)
    assert store.record_fill("nvda-1-buy", 0, None, "2024-06-04T14:35:00Z", "canceled") is None
    assert store.get_order("nvda-1-buy").status == "canceled"
    assert store.all_transactions() == []


def test_record_fill_rejections_change_nothing(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 10_000)
    journal(store, algo)
    for args, match in [
        (("nvda-1-buy", 11, 10.0, "2024-06-04T14:31:03Z", "filled"), "impossible"),
        (("nvda-1-buy", 5, 0.0, "2024-06-04T14:31:03Z", "filled"), "fill price"),
        (("nvda-1-buy", 5, None, "2024-06-04T14:31:03Z", "filled"), "fill price"),
        (("nvda-1-buy", -1, 10.0, "2024-06-04T14:31:03Z", "filled"), "filled quantity"),
        (("nvda-1-buy", 5, 10.0, "2024-06-04T14:31:03Z", "submitted"), "final status"),
        (("unknown", 5, 10.0, "2024-06-04T14:31:03Z", "filled"), "no journaled order"),
    ]:
        with pytest.raises(StoreError, match=match):
            store.record_fill(*args)
    assert store.get_order("nvda-1-buy").status == "pending"
    assert store.all_transactions() == []


def test_mark_final_and_open_orders(store: SystemStore) -> None:
    algo = store.create_instance("NVDA", "sma", 10_000)
    other = store.create_instance("AAPL", "sma", 10_000)
    journal(store, algo, coid="a", at="2024-06-04T14:33:00Z")
    journal(store, algo, coid="b", at="2024-06-04T14:31:00Z")
    journal(store, algo, coid="c", at="2024-06-04T14:32:00Z")
    store.journal_order("d", other, "AAPL", "buy", 1, "2024-06-04T14:30:00Z")
    store.mark_submitted("c", "bc")
    assert store.mark_final("a", "rejected", "insufficient buying power") is True
    assert store.mark_final("a", "failed", None) is False
    assert store.get_order("a").error == "insufficient buying power"
    with pytest.raises(StoreError, match="final status"):
        store.mark_final("b", "pending", None)
    assert [o.client_order_id for o in store.open_orders()] == ["d", "b", "c"]
    assert [o.status for o in store.open_orders()] == ["pending", "pending", "submitted"]
    assert [o.client_order_id for o in store.orders_for(algo)] == ["b", "c", "a"]
    assert [o.client_order_id for o in store.orders_for(other)] == ["d"]


# -- config, migrations, integrity ----------------------------------------------------------

def test_config_get_set_and_atomic_batch(store: SystemStore) -> None:
    assert store.get_config("mode") is None
    store.set_config("mode", "paper")
    store.set_configs({"mode": "live", "halt": "0"})
    assert (store.get_config("mode"), store.get_config("halt")) == ("live", "0")
    store.set_configs({"halt": None})
    assert store.get_config("halt") is None
    with pytest.raises(StoreError, match="must be text"):
        store.set_configs({"a": "1", "b": 2})  # type: ignore[dict-item]
    assert store.get_config("a") is None  # nothing of the batch was written


def test_fresh_file_has_no_plaintext_pin(store: SystemStore) -> None:
    rows = store.connection.execute("SELECT key, value FROM system_config").fetchall()
    assert rows == []


def test_migrations_idempotent_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "system.db"
    with SystemStore(path, now=FakeNow()) as store:
        algo = store.create_instance("NVDA", "sma", 1000)
        store.record_buy(algo, 1, 10.0)
    with SystemStore(path, now=FakeNow()) as store:
        conn = store.connection
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) == 3
        assert len(store.all_transactions()) == 1
        assert store.integrity_check() == (True, "ok")
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"transactions_algo_time", "orders_status", "transactions_client_order_id"} <= indexes
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_seed_built_database_upgrades_in_place(tmp_path: Path) -> None:
    """A system.db made by the seed's create_system_db.py keeps its rows and gains the journal."""
    path = tmp_path / "system.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE algorithm_instances (id INTEGER PRIMARY KEY AUTOINCREMENT,
            display_name TEXT NOT NULL, algorithm_type TEXT NOT NULL, ticker TEXT NOT NULL,
            initial_capital REAL NOT NULL CHECK(initial_capital > 0),
            status TEXT NOT NULL DEFAULT 'running' CHECK(status IN ('running', 'stopped')),
            created_at TEXT NOT NULL, stopped_at TEXT);
        CREATE TABLE transactions (id INTEGER PRIMARY KEY AUTOINCREMENT,
            algorithm_id INTEGER NOT NULL, type TEXT NOT NULL CHECK(type IN ('buy', 'sell')),
            shares INTEGER NOT NULL CHECK(shares > 0), price REAL NOT NULL CHECK(price > 0),
            timestamp TEXT NOT NULL, FOREIGN KEY (algorithm_id) REFERENCES algorithm_instances(id));
        CREATE TABLE system_config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO system_config (key, value) VALUES ('pin', '2020');
        INSERT INTO algorithm_instances (display_name, algorithm_type, ticker, initial_capital,
            created_at) VALUES ('NVDA_sma_crossover_20240604_143022', 'sma_crossover', 'NVDA',
            10000, '2024-06-04T14:30:22Z');
        INSERT INTO transactions (algorithm_id, type, shares, price, timestamp)
            VALUES (1, 'buy', 100, 150.5, '2024-06-04T14:30:00Z');
    """)
    conn.close()
    with SystemStore(path, now=FakeNow()) as store:
        inst = store.get_instance(1)
        assert (inst.ticker, inst.params_json, inst.faulted_reason) == ("NVDA", "{}", None)
        assert store.get_transactions(1)[0].client_order_id is None
        assert journal(store, 1) is True


def test_constructor_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "system.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        SystemStore(path)


def test_adopting_an_order_found_at_the_broker_is_once_and_only_for_a_known_card(store: SystemStore) -> None:
    card = store.create_instance("AAPL", "sma_crossover", 1000.0)
    assert store.newest_order_time() is None
    assert store.adopt_order("c-1", card, "AAPL", "buy", 5, "2024-06-04T15:01:00Z", "b-1") is True
    assert store.adopt_order("c-1", card, "AAPL", "buy", 9, "2024-06-04T15:09:00Z", "b-9") is False
    order = store.get_order("c-1")
    assert (order.status, order.shares, order.broker_order_id) == ("submitted", 5, "b-1")
    assert store.newest_order_time() == "2024-06-04T15:01:00Z"
    with pytest.raises(StoreError, match="no card with id 999"):
        store.adopt_order("c-2", 999, "AAPL", "buy", 5, "2024-06-04T15:01:00Z", "b-2")
    assert store.get_order("c-2") is None
    # Its fill is then recorded by the one fill rule, exactly once.
    tx = store.record_fill("c-1", 5, 10.0, "2024-06-04T15:02:00Z", "filled")
    assert store.record_fill("c-1", 5, 10.0, "2024-06-04T15:02:00Z", "filled") == tx


def test_a_durable_setting_is_written_with_full_sync_and_the_file_keeps_its_own(store: SystemStore) -> None:
    conn = store.connection
    before = conn.execute("PRAGMA synchronous").fetchone()[0]
    seen = []
    conn.set_trace_callback(seen.append)
    store.set_configs({"k": "v"}, durable=True)
    conn.set_trace_callback(None)
    assert seen.index("PRAGMA synchronous = FULL") < seen.index("COMMIT")
    assert store.get_config("k") == "v"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == before


def test_a_version_2_file_opens_and_gains_the_netted_orders_table(tmp_path):
    import sqlite3

    from app.storage.system_store import MIGRATIONS as ALL

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    for migration in ALL[:2]:
        migration(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO algorithm_instances (display_name, algorithm_type, ticker, initial_capital, "
                 "created_at) VALUES ('x', 'sma', 'AAPL', 1000, '2024-06-04T15:00:00Z')")
    conn.execute("INSERT INTO orders (client_order_id, algorithm_id, symbol, side, shares, status, submitted_at) "
                 "VALUES ('old-1', 1, 'AAPL', 'buy', 3, 'submitted', '2024-06-04T15:00:00Z')")
    conn.commit()
    conn.close()
    with SystemStore(path) as store:
        assert store.connection.execute("PRAGMA user_version").fetchone()[0] == 3
        old = store.get_order("old-1")
        assert (old.shares, old.status, old.parent_id) == (3, "submitted", None)
        assert store.open_net_orders() == []


def test_a_netted_order_and_its_cards_shares_are_written_and_booked_whole_and_once(tmp_path):
    with SystemStore(tmp_path / "system.db") as store:
        a = store.create_instance("AAPL", "sma", 1000.0)
        b = store.create_instance("AAPL", "sma", 1000.0)
        store.record_buy(b, 4, 90.0)
        children = (("a-buy", a, "buy", 6), ("b-sell", b, "sell", 4))
        assert store.journal_batch([], [("net-1", "AAPL", "buy", 2, 100.0, children)],
                                   "2024-06-04T15:00:02Z") == {"net-1"}
        # Written whole or not at all: a second netted order reusing a card's id is skipped entirely.
        assert store.journal_batch([], [("net-2", "AAPL", "sell", 1, 100.0, (("a-buy", a, "buy", 6),))],
                                   "2024-06-04T15:00:02Z") == set()
        assert store.get_net_order("net-2") is None
        assert [o.parent_id for o in store.net_shares("net-1")] == ["net-1", "net-1"]
        booked = store.book_net_order("net-1", "filled", 2, 101.0, "2024-06-04T15:00:03Z", None,
                                      {"a-buy": 6, "b-sell": 4}, 101.0)
        assert [coid for coid, _ in booked] == ["a-buy", "b-sell"]
        assert store.book_net_order("net-1", "filled", 2, 101.0, "2024-06-04T15:00:03Z", None,
                                    {"a-buy": 6, "b-sell": 4}, 101.0) == []
        assert [(t.type, t.shares, t.price) for t in store.get_transactions(a)] == [("buy", 6, 101.0)]
        assert store.get_net_order("net-1").status == "filled" and store.open_orders() == []
        with pytest.raises(StoreError):
            store.journal_batch([], [("net-3", "AAPL", "buy", 1, 100.0, (("c-buy", 99, "buy", 1),))],
                                "2024-06-04T15:00:02Z")
