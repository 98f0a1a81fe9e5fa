"""Readable from 2 m (issue 14 item 3): the figures' rendered font sizes at each panel size, and they fit.

On the 7" panel (0.193 mm/px) a figure needs about 8 mm, 40 px: a card's P&L and the header's value
and day's P&L; ticker and price at least 24 px. Bigger panels scale them up.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QFontInfo

from app.engine.events import AccountSummary
from app.ui.kiosk_window import KioskWindow
from app.ui.screenshot import render_png
from tests.ui import samples
from tests.ui.test_layout import layout_problems

SIZES = [QSize(800, 480), QSize(1024, 600), QSize(1280, 720), QSize(1920, 1080)]


def _px(widget) -> int:
    return QFontInfo(widget.font()).pixelSize()


def _widest_cards():
    """The sample cards with the widest figures each format allows."""
    cards = list(samples.sample_cards())
    cards[0] = samples.snapshot(1, pnl="-999999.4", price="99999.99", ticker="GOOGL")
    cards[1] = samples.snapshot(2, pnl="-999.99", price="1234.56", ticker="BRK.B")
    return tuple(cards)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s.width()}x{s.height()}")
def test_figures_are_big_enough_and_fit(qtbot, tmp_path, size):
    scale = min(size.width() / 800, size.height() / 480)
    win = KioskWindow(None, None, None, windowed=True, cards=_widest_cards(), market=samples.sample_market(False),
                      stream=samples.sample_stream(),
                      account=AccountSummary("live", Decimal("999999.4"), Decimal(0), True,
                                             value=Decimal("999999.4"), day_pnl=Decimal("-999999.4")))
    qtbot.addWidget(win)
    render_png(win, size, tmp_path / "glance.png")
    # The widest figures still fit the screen: at 800×480 they made the window 832 px wide (801 px with
    # a $100,118 account), HALT and ⚙ partly past the panel's edge.
    assert win.size() == size
    header = win.header
    assert _px(header.value) >= 40 * scale - 1 and _px(header.pnl) >= 40 * scale - 1
    for card in win.strip.cards.values():
        assert _px(card.pnl) >= 40 * scale - 1, card.pnl.text()
        assert _px(card.title) >= 24 * scale - 1
        if not card.snapshot.waiting_for_data:  # "waiting for data" is a sentence, not a figure
            assert _px(card.price) >= 24 * scale - 1
    for label in [header.value, header.pnl, header.market] + [c.pnl for c in win.strip.cards.values()] + \
            [win.strip.card(1).price]:
        # Drawn whole, never elided.
        assert label.width() >= label.fontMetrics().horizontalAdvance(label.text()), label.text()
    assert win.strip.card(1).pnl.text() == "-$999,999"
    assert layout_problems(win) == []


def test_fonts_grow_with_the_panel(qtbot, tmp_path):
    win = KioskWindow(None, None, None, windowed=True, cards=samples.sample_cards(),
                      account=samples.sample_account())
    qtbot.addWidget(win)
    sizes = []
    for size in SIZES:
        render_png(win, size, tmp_path / "s.png")
        card = win.strip.card(1)
        sizes.append((_px(card.pnl), _px(card.title), _px(win.header.value)))
    assert sizes[0] == (40, 24, 40)
    assert all(a < b for a, b in zip(sizes, sizes[1:]) for a, b in zip(a, b)), sizes
