"""What the cards must have booked, given the fills the broker made (netted orders expanded to their cards)."""

from __future__ import annotations

from decimal import Decimal

from app.engine.minute.netting import CardOrder, allocate, plan_symbol
from app.engine.minute.order_ids import ClientOrderIds


def expected_bookings(ids: ClientOrderIds, fills: dict[str, tuple]) -> dict[str, tuple[str, str, int, Decimal]]:
    """Broker fills {client id: (symbol, side, qty, price)} -> card bookings {card's client id: same}.

    A plain order of ours books itself; a netted one books each card's share (the rule of
    :mod:`app.engine.minute.netting`) at its fill price. Orders not ours are left out.
    """
    out: dict[str, tuple[str, str, int, Decimal]] = {}
    for coid, (symbol, side, qty, price) in fills.items():
        if ids.parse(coid):
            out[coid] = (symbol, side, qty, price)
            continue
        net = ids.parse_net(coid)
        if net is None:
            continue
        assert net.shares is not None, f"{coid}: a test netted order lists its cards"
        plan = plan_symbol([CardOrder(card, symbol, s, q) for card, s, q in net.shares])
        sides = {card: s for card, s, _ in net.shares}
        for card, got in allocate(plan, qty).items():
            if got:
                out[ids.make(card, net.minute, sides[card])] = (symbol, sides[card], got, price)
    return out
