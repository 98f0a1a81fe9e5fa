"""SimBookStore on real SQLite files: cash, orders and positions of the simulated broker."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.storage.sim_book_store import SimBookStore
from app.storage.system_store import StoreError

TS = 1_717_508_100  # 2024-06-04T13:35:00Z


@pytest.fixture
def book(tmp_path: Path):
    with SimBookStore(tmp_path / "sim_book.db", starting_cash=Decimal("10000")) as b:
        yield b


def test_new_book_holds_starting_cash_and_reopening_keeps_its_own(tmp_path: Path) -> None:
    path = tmp_path / "sim_book.db"
    with SimBookStore(path, starting_cash=Decimal("2500.50")) as b:
        assert b.cash() == Decimal("2500.50")
        assert b.positions() == {} and b.open_orders() == []
    with SimBookStore(path, starting_cash=Decimal("999999")) as b:
        assert b.cash() == Decimal("2500.50")
    with SimBookStore(tmp_path / "default.db") as b:
        assert b.cash() == Decimal("100000")


def test_bad_starting_cash_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="negative"):
        SimBookStore(tmp_path / "a.db", starting_cash=Decimal("-1"))
    with pytest.raises(StoreError, match="Decimal"):
        SimBookStore(tmp_path / "b.db", starting_cash=1000.5)  # type: ignore[arg-type]


def test_add_order_numbers_orders_and_refuses_a_reused_client_id(book: SimBookStore) -> None:
    first = book.add_order("c1", "AAPL", "buy", 10, TS)
    second = book.add_order("c2", "MSFT", "sell", 3, TS + 60)
    assert (first.id, first.status, first.filled_qty, first.filled_avg_price) == ("sim-000001", "submitted", 0, None)
    assert second.id == "sim-000002"
    with pytest.raises(StoreError, match="already used"):
        book.add_order("c1", "TSLA", "buy", 1, TS)
    assert book.get_order("c1") == first
    assert [o.client_order_id for o in book.open_orders()] == ["c1", "c2"]


@pytest.mark.parametrize("args, message", [
    (("", "AAPL", "buy", 1, TS), "client order id"),
    (("x" * 129, "AAPL", "buy", 1, TS), "client order id"),
    (("c", "AAPL", "short", 1, TS), "side"),
    (("c", "AAPL", "buy", 0, TS), "quantity"),
    (("c", "AAPL", "buy", True, TS), "quantity"),
    (("c", "AAPL", "buy", 1, float(TS)), "epoch"),
])
def test_add_order_refuses_bad_input_and_writes_nothing(book: SimBookStore, args: tuple, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        book.add_order(*args)
    assert book.open_orders() == []


def test_buy_fill_moves_cash_position_and_order_together_once(book: SimBookStore) -> None:
    book.add_order("c1", "AAPL", "buy", 10, TS)
    filled = book.record_fill("c1", Decimal("190.123"), TS)
    assert filled.status == "filled" and filled.filled_qty == 10
    assert filled.filled_avg_price == Decimal("190.123")
    assert filled.filled_at == "2024-06-04T13:35:00Z"
    assert book.cash() == Decimal("10000") - Decimal("1901.23")
    assert book.position("AAPL") == 10
    # A second fill of the same order counts nothing.
    assert book.record_fill("c1", Decimal("1"), TS + 60) == filled
    assert book.cash() == Decimal("8098.77")
    assert book.open_orders() == []


def test_sell_fill_adds_cash_and_reduces_position(book: SimBookStore) -> None:
    book.add_order("b", "AAPL", "buy", 10, TS)
    book.record_fill("b", Decimal("100"), TS)
    book.add_order("s", "AAPL", "sell", 4, TS + 60)
    book.record_fill("s", Decimal("101.5"), TS + 60)
    assert book.position("AAPL") == 6
    assert book.cash() == Decimal("10000") - Decimal("1000") + Decimal("406.0")
    assert book.positions() == {"AAPL": 6}


def test_a_sell_beyond_the_position_is_rejected_at_fill_without_moving_money(book: SimBookStore) -> None:
    book.add_order("s", "AAPL", "sell", 1, TS)
    result = book.record_fill("s", Decimal("100"), TS)
    assert result.status == "rejected" and "short" in (result.reason or "")
    assert book.cash() == Decimal("10000") and book.position("AAPL") == 0


def test_bad_fill_price_changes_nothing(book: SimBookStore) -> None:
    book.add_order("c1", "AAPL", "buy", 1, TS)
    for price in (Decimal("0"), Decimal("NaN"), 12.5):
        with pytest.raises(StoreError):
            book.record_fill("c1", price, TS)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="no simulated order"):
        book.record_fill("nope", Decimal("1"), TS)
    assert book.get_order("c1").status == "submitted"  # type: ignore[union-attr]
    assert book.cash() == Decimal("10000")


def test_close_order_only_touches_open_orders(book: SimBookStore) -> None:
    book.add_order("open", "AAPL", "buy", 1, TS)
    book.add_order("done", "AAPL", "buy", 1, TS)
    book.record_fill("done", Decimal("10"), TS)
    assert book.close_order("open", "canceled", "by request").status == "canceled"  # type: ignore[union-attr]
    assert book.close_order("done", "canceled", "too late").status == "filled"  # type: ignore[union-attr]
    assert book.close_order("unknown", "canceled", None) is None
    with pytest.raises(StoreError, match="canceled"):
        book.close_order("open", "filled", None)


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sim_book.db"
    with SimBookStore(path, starting_cash=Decimal("5000")) as b:
        b.add_order("b", "AAPL", "buy", 3, TS)
        b.record_fill("b", Decimal("50.01"), TS)
        b.add_order("pending", "AAPL", "sell", 1, TS + 60)
        orders = (b.get_order("b"), b.get_order("pending"))
    with SimBookStore(path) as b:
        assert (b.get_order("b"), b.get_order("pending")) == orders
        assert b.cash() == Decimal("4849.97")
        assert b.position("AAPL") == 3
        assert [o.client_order_id for o in b.open_orders()] == ["pending"]
        assert b.integrity_check() == (True, "ok")
