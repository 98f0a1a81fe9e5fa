"""Per-symbol netting: a minute's orders of several cards for one symbol become one broker order.

Alpaca refuses an order while an opposite-side order of the symbol is open ("potential wash
trade"), and one account holds every card, so the orders the cards want in one minute are netted
per symbol: buys B and sells S become at most one broker order of |B - S| shares on the side of the
difference. The min(B, S) shares that cross internally need no broker.

The rules (pure, no I/O; the journal applies them):

* Price: every share of a netted order is booked to its card at one price, the broker order's
  average fill price. When the broker order filled nothing (the cards' orders cancelled out, or it
  was rejected, canceled or never reached the broker), the crossed shares are booked at the close
  of the last bar the decisions saw (``cross_price``).
* Shares: the cards on the side opposite to the net get all their shares (they are the crossed
  part). The cards on the net side share ``crossed + filled`` shares pro rata to what they asked
  for, rounded down, the shares left over going one each to the largest remainders (ties: the
  lower card id). A full fill gives every card exactly what it asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CardOrder:
    """One card's order of the minute, after the risk guard."""

    card: int
    symbol: str
    side: str  # 'buy' | 'sell'
    shares: int


@dataclass(frozen=True, slots=True)
class NetPlan:
    """The netted order of one symbol: ``side`` None and ``shares`` 0 when the orders cancel out."""

    symbol: str
    orders: tuple[CardOrder, ...]
    side: str | None
    shares: int
    crossed: int


def plan_symbol(orders: Sequence[CardOrder]) -> NetPlan:
    """Net several cards' orders of one symbol."""
    buys = sum(o.shares for o in orders if o.side == "buy")
    sells = sum(o.shares for o in orders if o.side == "sell")
    side = "buy" if buys > sells else "sell" if sells > buys else None
    return NetPlan(orders[0].symbol, tuple(orders), side, abs(buys - sells), min(buys, sells))


def split(orders: Iterable[CardOrder]) -> tuple[list[CardOrder], list[NetPlan]]:
    """Orders of a symbol only one card trades stay plain orders; the others are netted per symbol."""
    by_symbol: dict[str, list[CardOrder]] = {}
    for order in orders:
        by_symbol.setdefault(order.symbol, []).append(order)
    plain: list[CardOrder] = []
    nets: list[NetPlan] = []
    for group in by_symbol.values():
        if len(group) == 1:
            plain.append(group[0])
        else:
            nets.append(plan_symbol(group))
    return plain, nets


def allocate(plan: NetPlan, filled: int) -> dict[int, int]:
    """Shares booked to each card (by card id) when the broker order filled ``filled`` shares."""
    if not 0 <= filled <= plan.shares:
        raise ValueError(f"a fill of {filled} shares is impossible for a netted order of {plan.shares}")
    if plan.side is None:
        return {o.card: o.shares for o in plan.orders}
    result = {o.card: o.shares for o in plan.orders if o.side != plan.side}
    wanted = [o for o in plan.orders if o.side == plan.side]
    demand = sum(o.shares for o in wanted)
    executed = plan.crossed + filled
    quotas = {o.card: divmod(executed * o.shares, demand) for o in wanted}
    for card, (whole, _) in quotas.items():
        result[card] = whole
    left = executed - sum(whole for whole, _ in quotas.values())
    for card in sorted(quotas, key=lambda c: (-quotas[c][1], c))[:left]:
        result[card] += 1
    return result
