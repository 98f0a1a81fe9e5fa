"""The risk guard: every refusal rule, and that a sound order passes."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from app.engine.trading.guard import OrderRequest, refusal

BUY = OrderRequest(side="buy", shares=10, price=Decimal("100"), instance_uninvested=Decimal("1000"),
                   instance_shares=0, market_open=True, halted=False)
SELL = OrderRequest(side="sell", shares=5, price=Decimal("100"), instance_uninvested=Decimal("0"),
                    instance_shares=5, market_open=True, halted=False,
                    symbol_shares_all_instances=5, broker_position=5)


def test_sound_orders_pass():
    assert refusal(BUY) is None  # exactly the card's cash
    assert refusal(SELL) is None  # exactly the card's shares
    assert refusal(replace(SELL, broker_position=None)) is None  # position unknown: the card's count rules


def test_halt_switch_refuses_everything_first():
    for req in (BUY, SELL, replace(BUY, market_open=False)):
        assert refusal(replace(req, halted=True)) == "trading is halted for the whole account"


def test_closed_market_refuses():
    assert refusal(replace(BUY, market_open=False)) == "the market is closed"
    assert refusal(replace(SELL, market_open=False)) == "the market is closed"


def test_unknown_side_refused():
    assert "unknown side" in refusal(replace(BUY, side="short"))


@pytest.mark.parametrize("shares", [0, -1, -500])
def test_fewer_than_one_share_refused(shares):
    assert refusal(replace(BUY, shares=shares)) == "an order needs at least one whole share"
    assert refusal(replace(SELL, shares=shares)) == "an order needs at least one whole share"


@pytest.mark.parametrize("price", [None, Decimal(0), Decimal("-1")])
def test_buy_without_a_price_refused(price):
    assert refusal(replace(BUY, price=price)) == "no price yet for this ticker"


def test_buy_costing_more_than_uninvested_cash_refused():
    reason = refusal(replace(BUY, shares=11))
    assert reason == "buying 11 shares costs about $1,100.00, more than the card's uninvested $1,000.00"
    # Cents matter: 1000.01 of cost against 1000.00 of cash is refused.
    assert refusal(replace(BUY, shares=1, price=Decimal("1000.01"))) is not None
    # A card whose cash went negative (fills above the decision price) shows $0.00, not a minus.
    assert "uninvested $0.00" in refusal(replace(BUY, instance_uninvested=Decimal("-3")))


def test_sell_more_than_the_card_holds_refused_no_shorting():
    assert refusal(replace(SELL, shares=6)) == "cannot sell 6 shares: the card holds 5 (no short selling)"
    assert refusal(replace(SELL, instance_shares=0, shares=1)) == \
        "cannot sell 1 shares: the card holds 0 (no short selling)"
    assert "holds 0" in refusal(replace(SELL, instance_shares=-2, shares=1))


def test_sell_more_than_the_broker_holds_refused():
    reason = refusal(replace(SELL, broker_position=3, symbol_shares_all_instances=8))
    assert reason == "cannot sell 5 shares: the broker account holds only 3 (cards together claim 8)"


def test_sell_needs_no_price():
    assert refusal(replace(SELL, price=None)) is None
