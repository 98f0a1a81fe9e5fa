"""The last check before any order leaves the engine. A refusal is a sentence, never an exception."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One decision about to become an order, with the facts the guard judges it on."""

    side: str  # 'buy' | 'sell'
    shares: int
    price: Decimal | None  # latest price; None when no bar has arrived yet
    instance_uninvested: Decimal  # the card's uninvested cash, less cash reserved by open orders
    instance_shares: int  # the card's shares, less shares already being sold
    market_open: bool
    halted: bool
    # Shares every running card holds in this symbol, and what the broker really holds.
    symbol_shares_all_instances: int = 0
    broker_position: int | None = None


def refusal(req: OrderRequest) -> str | None:
    """Return why the order must not be sent, or None if it may go.

    Rules: the market is open, the halt switch is off, at least one whole share, a buy costs no
    more than the card's uninvested cash at the latest price, a sell never exceeds the card's
    shares (no shorting), and sells never exceed what the broker actually holds in the symbol.
    """
    if req.halted:
        return "trading is halted for the whole account"
    if not req.market_open:
        return "the market is closed"
    if req.side not in ("buy", "sell"):
        return f"unknown side {req.side!r}"
    if req.shares < 1:
        return "an order needs at least one whole share"
    if req.side == "buy":
        if req.price is None or req.price <= 0:
            return "no price yet for this ticker"
        cost = req.price * req.shares
        if cost > req.instance_uninvested:
            return (f"buying {req.shares} shares costs about ${cost:,.2f}, more than the card's "
                    f"uninvested ${max(req.instance_uninvested, Decimal(0)):,.2f}")
        return None
    if req.shares > req.instance_shares:
        return f"cannot sell {req.shares} shares: the card holds {max(req.instance_shares, 0)} (no short selling)"
    if req.broker_position is not None and req.shares > req.broker_position:
        return (f"cannot sell {req.shares} shares: the broker account holds only "
                f"{req.broker_position} (cards together claim {req.symbol_shares_all_instances})")
    return None
