"""Publishing sends only the cards that changed; the header's broker cash is read on its own cadence
and is right after a fill. A real sim engine, the kiosk's publisher and its real Qt signals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.engine.events import CardsUpdate
from app.engine.host.signals import EngineSignals, QtPublisher
from app.engine.host.wiring import EngineOptions
from tests.engine.crash_child import SimRig

T0 = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)  # Tuesday, mid-session


@pytest.fixture
def rig(tmp_path, qapp):
    r = SimRig(tmp_path / "data", T0, options=EngineOptions(time_budget_s=5.0, algorithm_workers=0))
    signals = EngineSignals()
    r.updates = []
    signals.cards_changed.connect(r.updates.append)
    r.service.publisher = QtPublisher(signals)
    yield r
    r.close()


def test_only_changed_cards_are_published(rig):
    a = rig.add("AAPL", "buy_and_hold", 1000)
    b = rig.add("MSFT", "buy_and_hold", 1000)
    rig.start()
    rig.service.publish_all()
    first = rig.updates[0]  # each add published its card
    shown = first.apply({})
    for u in rig.updates[1:]:
        shown = u.apply(shown)
    assert list(shown) == [a, b]
    sent = len(rig.updates)

    rig.service.publish_all()  # nothing changed: nothing is sent
    assert len(rig.updates) == sent

    rig.system.set_faulted(b, "a test fault")  # one card changes
    rig.service.publish_all()
    update = rig.updates[-1]
    assert [c.instance_id for c in update.changed] == [b] and update.changed[0].faulted_reason == "a test fault"
    assert update.order == (a, b)

    rig.service.stop_instance(a)  # one card goes: nothing changed, the order says it is gone
    update = rig.updates[-1]
    assert update.changed == () and update.order == (b,)
    for u in rig.updates[sent:]:
        shown = u.apply(shown)
    assert list(shown) == [b] and shown[b] == rig.service.cards()[0]


def test_a_view_connecting_late_gets_every_card_again(rig):
    a = rig.add("AAPL", "buy_and_hold", 1000)
    rig.start()
    rig.service.publish_all()
    rig.updates.clear()
    rig.service.republish()
    (update,) = rig.updates
    assert [c.instance_id for c in update.changed] == [a]


def test_cards_update_folds_into_the_cards_shown(rig):
    a = rig.add("AAPL", "buy_and_hold", 1000)
    b = rig.add("MSFT", "buy_and_hold", 1000)
    rig.start()
    cards = rig.service.cards()
    shown = CardsUpdate.full(cards).apply({})
    assert list(shown) == [a, b]
    newer = CardsUpdate((cards[1],), (b, a)).apply(shown)
    assert list(newer) == [b, a] and newer[a] is shown[a]


class CashCounter:
    """Counts the broker's account-cash reads while passing them to the real SimBroker."""

    def __init__(self, broker):
        self.calls = 0
        self._read = broker.account_cash
        broker.account_cash = self

    def __call__(self):
        self.calls += 1
        return self._read()


def test_header_cash_is_read_after_a_fill_not_on_every_publish_and_is_right(rig):
    card = rig.add("AAPL", "buy_and_hold", 2000)
    rig.start()
    counter = CashCounter(rig.parts.broker)
    accounts = []
    rig.service.publisher._s.account_changed.connect(accounts.append)
    minute = T0
    filled = False
    for _ in range(4):  # buy_and_hold buys at its first minute; the sim fills it at the next bar
        result = rig.step(minute)
        rig.service.publish_all(fresh_cash=bool(result.fills or result.orders))
        filled = filled or bool(result.fills)
        minute += timedelta(minutes=1)
    assert filled and rig.system.get_transactions(card)
    reads = counter.calls
    for _ in range(3):  # quiet minutes: no fill, no order, so the cash read a moment ago stands
        result = rig.step(minute)
        assert not (result.fills or result.orders)
        rig.service.publish_all(fresh_cash=False)
        minute += timedelta(minutes=1)
    assert counter.calls == reads

    cash = rig.parts.broker.account_cash()
    (shown,) = rig.service.cards()
    assert shown.trade_count == 1 and shown.shares > 0
    assert accounts[-1].available_cash == cash - shown.uninvested
    assert accounts[-1].value == cash + shown.shares * shown.price
    assert shown.uninvested == Decimal(2000) - shown.shares * Decimal(str(rig.system.get_transactions(card)[0].price))
