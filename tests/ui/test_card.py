"""Cards: border colour from P&L, waiting for data, fault/refusal reasons, in-place updates."""

from __future__ import annotations

import dataclasses
import threading
from decimal import Decimal

import pytest
from PySide6.QtCore import QObject, QSize, Signal
from PySide6.QtWidgets import QApplication

from app.engine.events import TradeMarker
from app.ui import theme
from app.ui.card import WAITING_TEXT, Card, pnl_state
from app.ui.card_strip import CardStrip
from app.ui.kiosk_window import KioskWindow
from tests.ui import samples

METRICS = theme.Metrics.for_size(QSize(800, 480))


@pytest.mark.parametrize(("pnl", "state", "color"), [
    ("312.40", "profit", theme.GREEN), ("-0.01", "loss", theme.RED), ("0", "even", theme.WHITE),
    ("0.004", "even", theme.WHITE), ("-0.004", "even", theme.WHITE)])
def test_border_colour_follows_pnl_sign(qtbot, pnl, state, color):
    card = Card(samples.snapshot(1, pnl=pnl), METRICS)
    qtbot.addWidget(card)
    assert card.pnl_state == state
    assert card.border_color() == color
    # The colour is really painted: the left border's middle pixel.
    card.resize(METRICS.card_width, 380)
    image = card.grab().toImage()
    assert image.pixelColor(1, 190) == color


def test_border_changes_when_pnl_crosses_zero(qtbot):
    card = Card(samples.snapshot(1, pnl="5"), METRICS)
    qtbot.addWidget(card)
    card.update_snapshot(samples.snapshot(1, pnl="-5"))
    assert card.border_color() == theme.RED
    assert card.pnl.text() == "-$5.00"


def test_waiting_for_data(qtbot):
    card = Card(samples.snapshot(3, price=None), METRICS)
    qtbot.addWidget(card)
    assert card.price.text() == WAITING_TEXT
    assert card.pnl.text() == "$0.00"
    assert card.pnl_pct.text() == "0.00%"
    assert card.border_color() == theme.WHITE
    assert card.sparkline.point_count == 0
    card.update_snapshot(samples.snapshot(3, price="50.25"))
    assert card.price.text() == "$50.25"


def test_faulted_and_refused_reasons_are_shown(qtbot):
    card = Card(samples.snapshot(4, pnl="-3", faulted="run() raised KeyError: 'close'"), METRICS)
    qtbot.addWidget(card)
    assert card.status_text == "FAULTED: run() raised KeyError: 'close'"
    card.update_snapshot(samples.snapshot(4, pnl="-3", refused="market closed"))
    assert card.status_text == "ORDER REFUSED: market closed"
    card.update_snapshot(samples.snapshot(4, pnl="-3"))
    assert card.status_text == ""


def test_figures_are_formatted(qtbot):
    card = Card(samples.snapshot(1, pnl="1234.5", shares=1500), METRICS)
    qtbot.addWidget(card)
    assert card.pnl.text() == "+$1,235"  # whole dollars at glance size; the value row keeps the cents
    assert card.pnl_pct.text() == "+12.35%"
    assert card.value.text() == "$11,234.50"
    assert card.shares.text() == "1,500"
    assert card.title_text == "AAPL · SMA 20/50"
    assert card.subtitle.text() == "#1 · fast 20 · slow 50"  # the machine name is in the detail view
    assert "AAPL SMA #1" not in card.subtitle.text()


def test_title_falls_back_to_the_algorithm_name(qtbot):
    snap = dataclasses.replace(samples.snapshot(1), label="", params_text="")
    card = Card(snap, METRICS)
    qtbot.addWidget(card)
    assert card.title_text == "AAPL · SMA Crossover"
    assert card.subtitle.text() == "#1"


@pytest.mark.parametrize("size", [(800, 480), (1024, 600), (1280, 720)])
def test_friendly_title_is_not_cut_off(qtbot, size):
    # "AAPL · SMA cro…" was what the 7" panel showed; a five-letter ticker must fit too.
    metrics = theme.Metrics.for_size(QSize(*size))
    card = Card(dataclasses.replace(samples.snapshot(1), ticker="GOOGL"), metrics)
    qtbot.addWidget(card)
    card.setStyleSheet(theme.stylesheet(metrics))
    card.resize(metrics.card_width, 380)
    card.show()
    qtbot.waitExposed(card)
    assert card.title_text == "GOOGL · SMA 20/50"
    for label in (card.title, card.algo):
        assert label.fontMetrics().horizontalAdvance(label.text()) <= label.width()


def test_sparkline_draws_only_markers_inside_the_session(qtbot):
    start = samples.SESSION_START
    markers = (TradeMarker(start + 60 * 5, "buy", 1, Decimal("99")),
               TradeMarker(start + 60 * 9, "sell", 1, Decimal("101")),
               TradeMarker(start - 86_400, "buy", 1, Decimal("90")))  # yesterday: not on today's line
    card = Card(samples.snapshot(1, spark=samples.wave(30, 100, 1, 1), markers=markers), METRICS)
    qtbot.addWidget(card)
    card.resize(METRICS.card_width, 380)
    card.show()
    assert card.sparkline.point_count == 30
    assert card.sparkline.marker_count == 2


def test_strip_reuses_cards_by_instance_id(qtbot):
    strip = CardStrip(METRICS)
    qtbot.addWidget(strip)
    strip.set_cards(samples.sample_cards())
    before = dict(strip.cards)
    strip.set_cards([samples.snapshot(s.instance_id, pnl="7") for s in samples.sample_cards()])
    assert all(strip.cards[i] is before[i] for i in before)
    assert strip.card(1).pnl.text() == "+$7.00"
    # Instance 2 stopped, 9 is new, order changes: only 9 is created, only 2 dropped.
    strip.set_cards([samples.snapshot(9), samples.snapshot(1), samples.snapshot(3)])
    assert set(strip.cards) == {9, 1, 3}
    assert strip.cards[1] is before[1] and strip.cards[3] is before[3]
    layout = strip.widget().layout()
    assert [layout.itemAt(i).widget() for i in range(3)] == [strip.cards[9], strip.cards[1], strip.cards[3]]
    assert layout.itemAt(3).widget() is strip.add_tile


def test_card_tap_opens_detail(window, qtbot):
    card = window.strip.card(1)
    with qtbot.waitSignal(window.strip.card_tapped, timeout=1000) as blocker:
        card.tapped.emit(1)
    assert blocker.args == [1]
    assert window.detail.isVisible()
    assert window.detail.instance_id == 1


class CrossThreadSignals(QObject):
    """The engine's signal set (same names and types), emitted below from a plain worker thread."""

    cards_changed = Signal(object)
    market_changed = Signal(object)
    stream_changed = Signal(object)
    account_changed = Signal(object)
    notice = Signal(object)


def test_card_updates_within_one_event_loop_turn_of_cards_changed(qtbot):
    signals = CrossThreadSignals()
    win = KioskWindow(None, None, signals, windowed=True, cards=samples.sample_cards())
    qtbot.addWidget(win)
    updated = tuple(samples.snapshot(s.instance_id, pnl="-42") for s in samples.sample_cards())
    worker = threading.Thread(target=lambda: signals.cards_changed.emit(updated))
    worker.start()
    worker.join()
    # Queued across threads: nothing has changed until the UI loop turns once.
    assert win.strip.card(1).pnl.text() == "+$312.40"
    QApplication.processEvents()
    assert win.strip.card(1).pnl.text() == "-$42.00"
    assert win.strip.card(1).border_color() == theme.RED


def test_pnl_state_rounds_to_cents():
    assert pnl_state(Decimal("0.005")) == "profit"
    assert pnl_state(Decimal("-0.005")) == "loss"
    assert pnl_state(Decimal("0.0049")) == "even"


def test_card_labels_paint_their_own_black_background(qtbot):
    """Opaque labels: a new figure repaints the label alone, not the card behind it; an empty one is
    black, not whatever was drawn there before."""
    from PySide6.QtCore import Qt

    from app.ui.widgets import ElidedLabel

    card = Card(samples.snapshot(1, pnl="5"), METRICS)
    qtbot.addWidget(card)
    card.resize(METRICS.card_width, 380)
    labels = card.findChildren(ElidedLabel)
    assert labels and all(lab.testAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent) for lab in labels)
    assert card.status.text() == ""  # healthy: no status line
    card.status.resize(100, 20)
    image = card.status.grab().toImage()
    assert {image.pixelColor(x, y).name() for x in range(image.width()) for y in range(image.height())} == {"#000000"}
