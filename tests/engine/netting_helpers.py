"""What the cards must have booked, given the fills the broker made (netted orders expanded to their cards)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from app.engine.minute.netting import CardOrder, allocate, plan_symbol
from app.engine.minute.order_ids import INSTALLATION_ID_KEY, LEGACY_JOURNAL_ID_KEY, ClientOrderIds


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


def card_fills(system_db: Path, broker: dict[str, tuple]) -> dict[str, tuple]:
    """Broker fills {client id: (side, qty, price)} as the cards book them, from system.db's journal.

    A netted order becomes each card's share at its fill price; a netted order the broker filled
    nothing of (crossed whole, or never sent) adds its crossed shares at the cross price.
    """
    from app.storage.system_store import SystemStore

    with SystemStore(system_db) as store:
        ids = ClientOrderIds(store.get_config(INSTALLATION_ID_KEY) or "0" * 16, store.get_config(LEGACY_JOURNAL_ID_KEY))
        expanded = expected_bookings(ids, {c: ("", *v) for c, v in broker.items()})
        # Not ours (placed by hand, another installation) stays as it was: the caller judges it.
        out = {c: v[1:] for c, v in expanded.items()}
        out.update({c: v for c, v in broker.items() if not ids.parse(c) and not ids.is_net(c)})
        rows = store.connection.execute(
            "SELECT client_order_id, cross_price FROM net_orders WHERE filled_qty = 0 "
            "AND status NOT IN ('pending', 'submitted')").fetchall()
        for parent, cross in rows:
            if parent in broker or cross is None:
                continue
            shares = store.net_shares(parent)
            plan = plan_symbol([CardOrder(o.algorithm_id, o.symbol, o.side, o.shares) for o in shares])
            for o in shares:
                got = allocate(plan, 0)[o.algorithm_id]
                if got:
                    out[o.client_order_id] = (o.side, got, Decimal(str(cross)))
    return out
