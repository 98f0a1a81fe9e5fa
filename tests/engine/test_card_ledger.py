"""The card ledger: incremental per-card totals must always equal re-summing the stored fills."""

from __future__ import annotations

import random
import shutil
import threading
from pathlib import Path

import pytest

from app.engine.portfolio.ledger import CardLedger
from app.engine.portfolio.money import card_figures
from app.storage.system_store import SystemStore


@pytest.fixture()
def system(tmp_path: Path):
    store = SystemStore(tmp_path / "system.db")
    yield store
    store.close()


def _assert_matches(ledger: CardLedger, system: SystemStore, card: int, capital: float, price: float) -> None:
    stored = system.get_transactions(card, oldest_first=True)
    holding = ledger.holding(system, card)
    assert [tx.id for tx in holding.transactions] == [tx.id for tx in stored]
    assert holding.figures(capital, price) == card_figures(capital, stored, price)


def test_totals_follow_new_fills_of_every_card(system: SystemStore) -> None:
    rng = random.Random(7)
    cards = [system.create_instance(t, "buy_and_hold", 10_000) for t in ("AAPL", "MSFT", "NVDA")]
    ledger = CardLedger()
    held = dict.fromkeys(cards, 0)
    for step in range(300):
        card = rng.choice(cards)
        price = round(rng.uniform(50, 150), 2)
        if held[card] and rng.random() < 0.4:
            qty = rng.randint(1, held[card])
            system.record_sell(card, qty, price)
            held[card] -= qty
        else:
            qty = rng.randint(1, 5)
            system.record_buy(card, qty, price)
            held[card] += qty
        if step % 37 == 0:
            for c in cards:
                _assert_matches(ledger, system, c, 10_000, 101.5)
    for c in cards:
        _assert_matches(ledger, system, c, 10_000, 101.5)
        assert ledger.holding(system, c).shares == held[c]


def test_unknown_card_holds_nothing(system: SystemStore) -> None:
    holding = CardLedger().holding(system, 42)
    assert holding.transactions == () and holding.shares == 0 and holding.trade_count == 0


def test_a_late_fill_with_an_earlier_time_keeps_time_order(system: SystemStore) -> None:
    card = system.create_instance("AAPL", "buy_and_hold", 5_000)
    system.record_buy(card, 2, 100.0, timestamp="2024-06-04T14:40:00Z")
    ledger = CardLedger()
    ledger.holding(system, card)
    # A fill reconciled at start-up is recorded later but happened earlier.
    system.record_buy(card, 1, 99.0, timestamp="2024-06-04T14:35:00Z")
    _assert_matches(ledger, system, card, 5_000, 100.0)
    assert [tx.timestamp for tx in ledger.holding(system, card).transactions] == [
        "2024-06-04T14:35:00Z", "2024-06-04T14:40:00Z"]


def _restore(path: Path, backup: Path) -> SystemStore:
    shutil.copy(backup, path)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return SystemStore(path)


def test_a_restored_older_database_is_read_again(tmp_path: Path) -> None:
    path, backup = tmp_path / "system.db", tmp_path / "backup.db"
    store = SystemStore(path)
    card = store.create_instance("AAPL", "buy_and_hold", 5_000)
    store.record_buy(card, 3, 100.0)
    store.close()
    shutil.copy(path, backup)
    store = SystemStore(path)
    store.record_buy(card, 4, 101.0)  # id 2, lost by the restore below
    ledger = CardLedger()
    assert ledger.holding(store, card).shares == 7
    store.close()

    # Restored, and trading before the ledger looks: the new row reuses id 2.
    store = _restore(path, backup)
    store.record_buy(card, 5, 99.0)
    _assert_matches(ledger, store, card, 5_000, 100.0)
    assert ledger.holding(store, card).shares == 8
    store.close()

    # Restored again: fewer rows than the ledger has seen.
    store = _restore(path, backup)
    assert ledger.holding(store, card).shares == 3
    store.close()


def test_threads_reading_while_fills_arrive_see_consistent_totals(tmp_path: Path) -> None:
    path = tmp_path / "system.db"
    writer = SystemStore(path)
    card = writer.create_instance("AAPL", "buy_and_hold", 1_000_000)
    ledger = CardLedger()
    problems: list[str] = []
    done = threading.Event()

    def read() -> None:
        reader = SystemStore(path, shared=True)
        try:
            while not done.is_set():
                holding = ledger.holding(reader, card)
                if holding.shares != sum(tx.shares for tx in holding.transactions):
                    problems.append(f"{holding.shares} shares for {holding.trade_count} fills")
        finally:
            reader.close()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for _ in range(200):
        writer.record_buy(card, 1, 10.0)
    done.set()
    for t in readers:
        t.join()
    assert problems == []
    assert ledger.holding(writer, card).shares == 200
    writer.close()


def test_a_ledger_started_over_a_long_history_matches_re_summing(system: SystemStore) -> None:
    # Prices of up to six decimals are summed in SQL, a card with a finer one per exact price:
    # both must equal adding fill by fill in Decimal.
    coarse = system.create_instance("AAPL", "buy_and_hold", 50_000)
    fine = system.create_instance("MSFT", "buy_and_hold", 50_000)
    rng = random.Random(3)
    for k in range(700):
        day = 1 + k // 200
        when = f"2024-06-{day:02d}T14:{k % 60:02d}:{k % 59:02d}Z"
        system.record_buy(coarse, rng.randint(1, 9), round(rng.uniform(0.1, 300), 2), timestamp=when)
        system.record_sell(coarse, 1, 0.1, timestamp=when)
        system.record_buy(fine, 3, rng.choice([0.1, 101.2345678, 33.333333333]), timestamp=when)
    ledger = CardLedger()
    for card in (coarse, fine):
        _assert_matches(ledger, system, card, 50_000, 123.45)


def test_the_paged_history_reads_like_a_list(system: SystemStore) -> None:
    card = system.create_instance("AAPL", "buy_and_hold", 1_000_000)
    for k in range(1300):  # several pages before the latest day, and a latest day of its own
        system.record_buy(card, 1 + k % 5, 100.0 + k % 13, timestamp=f"2024-06-{1 + k // 300:02d}T15:{k % 60:02d}:00Z")
    ledger = CardLedger()
    history = ledger.holding(system, card).transactions
    stored = system.get_transactions(card, oldest_first=True)
    assert len(history) == 1300
    assert list(history) == stored
    assert list(reversed(history)) == stored[::-1]
    assert history[-1] == stored[-1] and history[0] == stored[0] and history[700] == stored[700]
    assert history[250:1290] == stored[250:1290] and history[::7] == stored[::7]
    # A fill recorded after the holding was taken is not in it; the next holding has it.
    system.record_sell(card, 1, 101.0, timestamp="2024-06-05T16:00:00Z")
    assert len(history) == 1300 and list(history) == stored
    again = ledger.holding(system, card).transactions
    assert len(again) == 1301 and again[-1].type == "sell"
    assert list(again) == system.get_transactions(card, oldest_first=True)


def test_a_checkpoint_spares_the_next_start_the_old_fills_and_is_ignored_when_stale(tmp_path: Path) -> None:
    path, backup = tmp_path / "system.db", tmp_path / "backup.db"
    store = SystemStore(path)
    card = store.create_instance("AAPL", "buy_and_hold", 50_000)
    other = store.create_instance("MSFT", "buy_and_hold", 50_000)
    for k in range(50):
        store.record_buy(card, 1 + k % 3, 100.25 + k, timestamp=f"2024-06-03T15:{k:02d}:00Z")
        store.record_buy(other, 2, 33.333333333, timestamp=f"2024-06-03T15:{k:02d}:30Z")
    CardLedger().checkpoint(store)
    store.close()
    shutil.copy(path, backup)  # a backup that carries its own checkpoint
    store = SystemStore(path)
    store.record_sell(card, 5, 180.5, timestamp="2024-06-04T15:00:00Z")
    store.record_buy(other, 1, 12.0000001, timestamp="2024-06-04T15:01:00Z")

    statements: list[str] = []
    store.connection.set_trace_callback(statements.append)
    fresh = CardLedger()
    for c in (card, other):
        _assert_matches(fresh, store, c, 50_000, 150.0)
    scans = [s for s in statements if "GROUP BY algorithm_id" in s]
    assert scans and all("id > 100" in s for s in scans), scans  # only the fills after the checkpoint
    store.close()

    # A checkpoint that no longer matches the file (its last row is not there) is not used.
    store = SystemStore(path)
    fresh.checkpoint(store)
    store.close()
    restored = _restore(path, backup)
    import json
    with SystemStore(backup) as saved:
        point = json.loads(saved.get_config("ledger_checkpoint"))
    point["upto"], point["count"] = 101, 101  # as if written by a run that recorded one more fill
    restored.set_config("ledger_checkpoint", json.dumps(point))
    for c in (card, other):
        _assert_matches(CardLedger(), restored, c, 50_000, 150.0)
    restored.close()
