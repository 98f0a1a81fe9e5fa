"""Card maths."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

import pytest

from app.engine.portfolio.money import CardFigures, available_cash, card_figures, format_money, format_pct
from app.storage.records import TransactionRecord


def tx(i: int, kind: str, shares: int, price: float) -> TransactionRecord:
    return TransactionRecord(i, 2, kind, shares, price, "2024-06-04T14:30:00Z", None)


SEED_HISTORY = [tx(1, "buy", 100, 150.50), tx(2, "buy", 50, 145.25), tx(3, "sell", 25, 155.75)]


def test_seed_example() -> None:
    figures = card_figures(20_000, SEED_HISTORY, 152.00)
    assert figures.shares == 125
    assert figures.trade_count == 3
    # 100 × 150.50 + 50 × 145.25 − 25 × 155.75
    assert figures.invested == Decimal("18418.75")
    assert figures.uninvested == Decimal("1581.25")
    assert figures.price == Decimal("152.0")
    assert figures.value == Decimal("20581.25")  # 125 × 152 + 1581.25
    assert figures.pnl == Decimal("581.25")  # the seed's "pnl: $581.25"
    assert figures.pnl_pct == Decimal("2.90625")
    assert figures.has_price
    assert format_money(figures.pnl, signed=True) == "+$581.25"
    assert format_pct(figures.pnl_pct) == "+2.91%"


def test_floats_are_converted_through_str_so_no_binary_noise() -> None:
    figures = card_figures(1000.1, [tx(1, "buy", 3, 0.1)], 0.2)
    assert figures.invested == Decimal("0.3")
    assert figures.uninvested == Decimal("999.8")
    assert figures.value == Decimal("1000.4")


def test_design_counter_example_available_cash() -> None:
    # $50k account, one $10k card that bought $6k of stock: the broker now holds $44k cash.
    card = card_figures(10_000, [tx(1, "buy", 60, 100.0)], 100.0)
    assert card.uninvested == Decimal("4000.0")
    broker_cash_after_buy = Decimal(50_000) - card.invested
    assert broker_cash_after_buy == Decimal("44000.0")
    available = available_cash(broker_cash_after_buy, [card.uninvested])
    assert available == Decimal("40000.0")  # not the seed's $34k
    assert available_cash(broker_cash_after_buy, []) == Decimal("44000.0")


def test_available_cash_clamps_at_zero() -> None:
    assert available_cash(Decimal("1000"), [Decimal("800"), 500.0]) == Decimal(0)
    assert available_cash("1000.50", [Decimal("0.25")]) == Decimal("1000.25")


def test_no_price_yet_waits_for_data() -> None:
    for price in (None, 0, 0.0, Decimal(0)):
        figures = card_figures(Decimal("5000"), [], price)
        assert figures == CardFigures(
            shares=0,
            trade_count=0,
            invested=Decimal(0),
            uninvested=Decimal("5000"),
            price=None,
            value=Decimal("5000"),
            pnl=Decimal(0),
            pnl_pct=Decimal(0),
            has_price=False,
        )


def test_no_price_with_holdings_still_shows_zero_pnl() -> None:
    figures = card_figures(20_000, SEED_HISTORY, None)
    assert figures.shares == 125
    assert not figures.has_price
    assert figures.value == Decimal(20_000)
    assert figures.pnl == 0 and figures.pnl_pct == 0


def test_all_sold() -> None:
    history = [tx(1, "buy", 10, 100.0), tx(2, "sell", 10, 110.0)]
    figures = card_figures(5_000, history, 200.0)
    assert figures.shares == 0
    assert figures.trade_count == 2
    assert figures.invested == Decimal("-100.0")  # proceeds exceeded cost
    assert figures.uninvested == Decimal("5100.0")
    assert figures.value == Decimal("5100.0")  # the price no longer matters
    assert figures.pnl == Decimal("100.0")
    assert figures.pnl_pct == Decimal("2")


def test_losing_position() -> None:
    figures = card_figures(1_000, [tx(1, "buy", 5, 100.0)], 90.0)
    assert figures.pnl == Decimal("-50.0")
    assert figures.pnl_pct == Decimal("-5")
    assert format_money(figures.pnl) == "-$50.00"
    assert format_pct(figures.pnl_pct) == "-5.00%"


def test_accepts_any_object_with_type_shares_price() -> None:
    class Fill(NamedTuple):
        type: str
        shares: int
        price: Decimal

    figures = card_figures(Decimal("100"), [Fill("buy", 2, Decimal("10.5"))], Decimal("11"))
    assert figures.pnl == Decimal("1.0")


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([tx(1, "short", 1, 1.0)], "type must be 'buy' or 'sell'"),
        ([tx(1, "buy", -1, 1.0)], "shares must be a whole number"),
        ([tx(1, "buy", 1, float("nan"))], "finite"),
    ],
)
def test_bad_transactions_are_refused(history, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        card_figures(1000, history, 1.0)


def test_bad_capital_and_price_are_refused() -> None:
    with pytest.raises(ValueError, match="initial capital"):
        card_figures(-1, [], 1.0)
    with pytest.raises(ValueError, match="price must not be negative"):
        card_figures(100, [], -1.0)
    with pytest.raises(ValueError, match="not a number"):
        card_figures("lots", [], 1.0)


def test_format_money() -> None:
    assert format_money(Decimal("1234.56")) == "$1,234.56"
    assert format_money(Decimal("-12")) == "-$12.00"
    assert format_money(Decimal("1234567.005")) == "$1,234,567.01"  # half-up
    assert format_money(Decimal("-0.004")) == "$0.00"
    assert format_money(Decimal("0.5"), signed=True) == "+$0.50"
    assert format_money(12.5) == "$12.50"


def test_format_pct() -> None:
    assert format_pct(Decimal("2.90625")) == "+2.91%"
    assert format_pct(Decimal("-0.5")) == "-0.50%"
    assert format_pct(Decimal("0.001")) == "0.00%"
    assert format_pct(Decimal("3"), signed=False) == "3.00%"


def test_realised_pnl_at_average_cost():
    from app.engine.portfolio.money import realised_pnl
    assert realised_pnl([]) == 0
    # 150 shares at an average of 148.75, 25 sold at 155.75: 25 × 7.00 booked, 125 still held.
    assert realised_pnl(SEED_HISTORY) == Decimal("175.00")
    closed = [*SEED_HISTORY, tx(4, "sell", 125, 140)]
    # All sold: exactly the proceeds minus the costs, no average-cost rounding.
    assert realised_pnl(closed) == Decimal(str(25 * 155.75 + 125 * 140 - 100 * 150.50 - 50 * 145.25))
