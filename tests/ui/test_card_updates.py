"""Incremental card updates: only the card widgets whose snapshot changed are touched, a big update
is applied a slice per UI loop turn, and gone cards leave at once (real widgets under pytest-qt)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from PySide6.QtCore import QSize

from app.engine.events import CardsUpdate
from app.ui import theme
from app.ui.card_strip import CardStrip
from app.ui.kiosk_window import KioskWindow
from tests.ui import samples

METRICS = theme.Metrics.for_size(QSize(1024, 600))


def _cards(n: int, pnl: str = "1"):
    return [samples.snapshot(i, pnl=pnl, ticker=f"T{i:03d}") for i in range(1, n + 1)]


def test_only_changed_cards_are_rebuilt(qtbot):
    strip = CardStrip(METRICS)
    qtbot.addWidget(strip)
    cards = _cards(30)
    strip.set_cards(cards)
    assert strip.rebuilt == 30
    widgets = dict(strip.cards)
    snaps = {i: w.snapshot for i, w in widgets.items()}

    changed = (dataclasses.replace(cards[4], pnl=Decimal("-7")), dataclasses.replace(cards[9], shares=99))
    strip.apply(CardsUpdate(changed, tuple(c.instance_id for c in cards)))
    qtbot.waitUntil(lambda: strip.pending == 0)
    assert strip.rebuilt == 32
    assert strip.card(5).pnl.text() == "-$7.00" and strip.card(5).border_color() == theme.RED
    assert strip.card(10).shares.text() == "99"
    assert all(strip.cards[i] is widgets[i] for i in widgets)
    assert all(strip.cards[i].snapshot is snaps[i] for i in widgets if i not in (5, 10))

    # A card sent again unchanged (a full update after a reconnect) is not touched.
    strip.apply(CardsUpdate.full(tuple(strip.cards[i].snapshot for i in sorted(strip.cards))))
    qtbot.waitUntil(lambda: strip.pending == 0)
    assert strip.rebuilt == 32


def test_a_large_update_lands_over_loop_turns_and_gone_cards_leave_at_once(qtbot):
    strip = CardStrip(METRICS)
    qtbot.addWidget(strip)
    cards = _cards(120)
    strip.set_cards(cards)
    fresh = tuple(dataclasses.replace(c, pnl=Decimal("42")) for c in cards[:100])
    strip.apply(CardsUpdate(fresh, tuple(c.instance_id for c in cards[:100])))
    assert set(strip.cards) == set(range(1, 101))  # the 20 gone cards are gone before any slice
    qtbot.waitUntil(lambda: strip.pending == 0)
    assert all(strip.card(i).pnl.text() == "+$42.00" for i in range(1, 101))
    layout = strip.widget().layout()
    assert [layout.itemAt(i).widget() for i in range(100)] == [strip.cards[i] for i in range(1, 101)]


def test_newer_snapshot_of_a_pending_card_wins(qtbot):
    strip = CardStrip(METRICS)
    qtbot.addWidget(strip)
    cards = _cards(3)
    strip.set_cards(cards)
    order = tuple(c.instance_id for c in cards)
    strip.apply(CardsUpdate((dataclasses.replace(cards[0], pnl=Decimal("5")),), order))
    strip.apply(CardsUpdate((dataclasses.replace(cards[0], pnl=Decimal("6")),), order))
    qtbot.waitUntil(lambda: strip.pending == 0)
    assert strip.card(1).pnl.text() == "+$6.00"


def test_kiosk_keeps_unchanged_cards_of_an_update(qtbot):
    window = KioskWindow(None, None, None, windowed=True, cards=samples.sample_cards())
    qtbot.addWidget(window)
    before = {i: window.strip.card(i).snapshot for i in window.strip.cards}
    first = next(iter(before))
    changed = dataclasses.replace(before[first], pnl=Decimal("-42"))
    window.on_cards(CardsUpdate((changed,), tuple(before)))
    qtbot.waitUntil(lambda: window.strip.pending == 0)
    assert window.strip.card(first).pnl.text() == "-$42.00"
    assert all(window.strip.card(i).snapshot is before[i] for i in before if i != first)
