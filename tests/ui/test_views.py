"""Add dialog (local checks), detail view, notice line, screenshots, and the 50-card update budget."""

from __future__ import annotations

import statistics
import time
from decimal import Decimal
from pathlib import Path

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QImage

from app.engine.plugins.loader import discover
from app.engine.events import Notice
from app.storage.records import TransactionRecord
from app.ui import theme
from app.ui.card_strip import CardStrip
from app.ui.detail_view import transaction_row
from app.ui.screenshot import render_png
from tests.ui import samples

BROKEN = Path(__file__).resolve().parents[1] / "engine" / "broken_algorithms"


@pytest.fixture
def add(window):
    dialog = window.add_dialog
    dialog.set_algorithms(discover() + discover([BROKEN]))
    dialog._available = Decimal("40000")
    dialog.open_overlay()
    return dialog


def test_broken_algorithms_are_listed_greyed_and_not_selectable(add):
    broken = [i for i in discover([BROKEN]) if not i.ok]
    assert broken
    for info in broken:
        btn = add.algorithm_buttons[info.algorithm_type]
        assert not btn.isEnabled()
        assert info.error in btn.lines[1]
        add.select_algorithm(info.algorithm_type)
        assert add.selected_algorithm != info.algorithm_type
    add.algorithm_buttons["sma_crossover"].click()
    assert add.selected_algorithm == "sma_crossover"
    assert set(add.param_fields) == {"fast", "slow"}
    assert add.field("param:fast").text == "20"  # the default


def test_backtest_button_is_offered(add):
    assert add.backtest_button.objectName() == "addBacktest"
    assert add.backtest_button.isVisibleTo(add)
    assert add.backtest_button.height() >= 48


@pytest.mark.parametrize(("typed", "error"), [
    ("0", "more than $0"), ("40000.01", "Only $40,000.00 is available"), ("12.345", "two decimals"),
    ("1..2", "not an amount")])
def test_capital_checked_inline(add, typed, error):
    add.type_into("capital", typed)
    assert error in add.note_of("capital")
    assert add.capital.has_error


def test_capital_within_available_is_fine(add):
    add.type_into("capital", "40000")
    assert add.note_of("capital") == ""
    assert add.numbers.isVisible() and not add.letters.isVisible()


def test_parameters_checked_with_their_rules(add):
    add.select_algorithm("sma_crossover")
    add.field("param:fast").box.click()
    add.numbers.buttons["CLEAR"].click()
    add.numbers.buttons["0"].click()
    assert "at least 1" in add.note_of("param:fast")
    add.numbers.buttons["BACK"].click()
    add.numbers.buttons["5"].click()
    assert add.note_of("param:fast") == ""


def test_ticker_keypad_types_letters(add):
    add.type_into("ticker", "BRK.B")
    assert add.ticker.text == "BRK.B"
    assert add.letters.isVisible()
    add.letters.buttons["BACK"].click()
    assert add.ticker.text == "BRK."


def test_submit_without_engine_shows_errors_and_creates_nothing(add, qtbot):
    add.submit()
    qtbot.waitUntil(lambda: add.error_text != "" and not add.busy, timeout=2000)
    assert add.error_text == "Choose an algorithm."
    assert "Enter a ticker" in add.note_of("ticker")
    assert "Enter the capital" in add.note_of("capital")


def test_transaction_rows_in_local_time():
    tx = TransactionRecord(7, 1, "sell", 6, 186.1, "2025-03-14T15:20:00Z", "c-1")
    row = transaction_row(tx)
    from datetime import datetime, timezone
    local = datetime(2025, 3, 14, 15, 20, tzinfo=timezone.utc).astimezone().strftime("%a %d %b %H:%M")
    assert row == (local, "SELL", "6", "$186.10", "$1,116.60")


def test_detail_view_figures_and_stop_choice(window, qtbot):
    window.open_detail(1)
    detail = window.detail
    assert detail.isVisible()
    assert detail.figures["pnl"].text() == "+$312.40  +3.12%"
    assert not detail.resume_button.isVisibleTo(detail)
    detail.set_transactions([TransactionRecord(2, 1, "sell", 6, 186.1, "2025-03-14T15:20:00Z", None),
                             TransactionRecord(1, 1, "buy", 16, 181.9, "2025-03-14T13:50:00Z", None)])
    assert detail.transactions.rowCount() == 2
    assert detail.transactions.text(0, 1) == "SELL"
    detail.show_stop_choice()
    sell, keep = detail.consequence_texts()
    assert "market order for all 10 shares" in sell
    assert "stay in the brokerage account" in keep
    with qtbot.waitSignal(detail.stop_chosen, timeout=500) as blocker:
        detail.sell_button.click()
    assert blocker.args == [1, True]
    with qtbot.waitSignal(detail.stop_chosen, timeout=500) as blocker:
        detail.keep_button.click()
    assert blocker.args == [1, False]


def test_detail_of_faulted_card_offers_resume_and_shows_reason(window):
    window.open_detail(4)
    assert window.detail.resume_button.isVisibleTo(window.detail)
    assert "ZeroDivisionError" in window.detail.reason.text()


def test_detail_stop_without_shares_has_no_sell_option(window):
    window.open_detail(5)
    window.detail.show_stop_choice()
    assert not window.detail.sell_button.isVisibleTo(window.detail)
    assert window.detail.keep_button.text() == "STOP THIS CARD"


def test_detail_closes_when_its_card_is_gone(window):
    window.open_detail(2)
    window.on_cards([s for s in samples.sample_cards() if s.instance_id != 2])
    assert not window.detail.isVisible()
    assert "#2 is no longer running" in window.notice_bar.text


def test_notices_are_shown(window):
    window.on_notice(Notice("refused", "buy refused: market closed", instance_id=1))
    assert "REFUSED" in window.notice_bar.text and "market closed" in window.notice_bar.text


def test_actions_without_engine_show_an_error_not_a_crash(window, qtbot):
    window.header.halt_button.click()  # one tap, no PIN: the failure goes to the notice line
    qtbot.waitUntil(lambda: "not connected" in window.notice_bar.text, timeout=2000)
    assert not window.pin.isVisible()
    qtbot.waitUntil(lambda: not window.busy, timeout=2000)
    window.header.settings_button.click()
    qtbot.waitUntil(window.pin.isVisible, timeout=2000)
    for d in "2020":
        window.pin.press(d)
    window.pin.press("OK")
    qtbot.waitUntil(lambda: "not connected" in window.pin.message.text(), timeout=2000)
    window.pin.cancel()
    qtbot.waitUntil(lambda: not window.busy, timeout=2000)


@pytest.mark.parametrize("size", [QSize(800, 480), QSize(1280, 720)], ids=str)
def test_render_png(window, tmp_path, size):
    path = render_png(window, size, tmp_path / "shot.png")
    image = QImage(str(path))
    assert image.size() == size
    assert image.pixelColor(size.width() - 1, size.height() // 2) == theme.BLACK


def test_fifty_cards_update_and_repaint_within_a_frame(qtbot, qloop, tmp_path):
    metrics = theme.Metrics.for_size(QSize(1920, 1080))
    strip = CardStrip(metrics)
    qtbot.addWidget(strip)
    cards = [samples.snapshot(i, pnl=str(i - 25), spark=samples.wave(390, 100, 1, i % 5)) for i in range(1, 51)]
    strip.set_cards(cards)
    strip.widget().setMinimumWidth(51 * (metrics.card_width + metrics.pad_px))
    strip.setStyleSheet(theme.stylesheet(metrics))
    render_png(strip, QSize(1920, 900), tmp_path / "strip.png")
    content = strip.widget()
    timings = []
    for round_ in range(12):
        fresh = [samples.snapshot(i, pnl=str(i - 25 + round_ + 1), price=f"{100 + round_ + i / 100:.2f}",
                                  spark=samples.wave(390, 100 + round_, 1, i % 5)) for i in range(1, 51)]
        start = time.perf_counter()
        strip.set_cards(fresh)
        content.repaint()  # every card, not only the visible ones
        timings.append((time.perf_counter() - start) * 1000)
    median = statistics.median(timings)
    print(f"50 cards updated + repainted: median {median:.2f} ms, max {max(timings):.2f} ms")
    assert strip.card(50).pnl.text() == "+$37.00"
    # The time per round is a figure of bench/bench_ui.py (update_median_ms), not a test limit.
