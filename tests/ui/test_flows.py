"""Whole flows against a real sim engine on its own thread: PIN, add (and each refusal), stop, halt.

Skipped until the engine service exists.
"""

from __future__ import annotations

import pytest

pytest.importorskip("app.engine.host.service")
engine_host = pytest.importorskip("app.engine.host.thread")

from PySide6.QtCore import QSize, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from app.ui.kiosk_window import KioskWindow  # noqa: E402
from app.ui.screenshot import render_png  # noqa: E402

SLOW_MS = 30_000


@pytest.fixture
def host(tmp_path, qloop):
    h = engine_host.EngineHost.for_tests(tmp_path / "data")
    yield h
    h.stop()


def resolve(qtbot, future, timeout=SLOW_MS):
    qtbot.waitUntil(future.done, timeout=timeout)
    return future.result()


@pytest.fixture
def kiosk(host, qtbot, tmp_path):
    cards = resolve(qtbot, host.client.call(host.service.cards))
    account = resolve(qtbot, host.client.call(host.service.account))
    win = KioskWindow(host.service, host.client, host.signals, windowed=True, cards=cards, account=account)
    qtbot.addWidget(win)
    render_png(win, QSize(800, 480), tmp_path / "w.png")
    return win


def enter(pin_dialog, digits: str) -> None:
    for d in digits:
        pin_dialog.press(d)
    pin_dialog.press("OK")


def pass_pin(win, qtbot, digits: str = "2020") -> None:
    """Enter the PIN; if the engine asks for a new one (default PIN), choose LATER."""
    qtbot.waitUntil(lambda: win.pin.isVisible() and win.pin.keypad.buttons["1"].isEnabled(), timeout=5000)
    enter(win.pin, digits)
    qtbot.waitUntil(lambda: not win.pin.isVisible() or win.pin.title.text() == "New PIN", timeout=SLOW_MS)
    if win.pin.isVisible():
        win.pin.cancel_button.click()  # "LATER"
        qtbot.waitUntil(lambda: not win.pin.isVisible(), timeout=5000)


def running_cards(host, qtbot):
    return resolve(qtbot, host.client.call(host.service.cards))


def add_card(win, qtbot, ticker="AAPL", capital="10000", algorithm="buy_and_hold") -> int:
    before = set(win.strip.cards)
    win.strip.add_tile.click()
    pass_pin(win, qtbot)
    dialog = win.add_dialog
    qtbot.waitUntil(lambda: dialog.isVisible() and dialog.algorithms_loaded, timeout=SLOW_MS)
    dialog.select_algorithm(algorithm)
    dialog.type_into("ticker", ticker)
    dialog.type_into("capital", capital)
    dialog.create_button.click()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=SLOW_MS)
    qtbot.waitUntil(lambda: bool(set(win.strip.cards) - before), timeout=SLOW_MS)
    (new_id,) = set(win.strip.cards) - before
    return new_id


# -- PIN ------------------------------------------------------------------------------------------

def test_halt_is_one_tap_and_resume_needs_the_pin(kiosk, host, qtbot):
    win = kiosk
    win.header.halt_button.click()  # one tap: no PIN, no default-PIN nag
    qtbot.waitUntil(lambda: win.halt_banner.isVisible(), timeout=SLOW_MS)
    assert not win.pin.isVisible()
    assert win.header.halt_button.text() == "RESUME"
    assert resolve(qtbot, host.client.call(host.service.status))["halted"] is True

    # Resume asks for the PIN; the factory PIN is then changed on the way.
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)
    win.header.halt_button.click()
    qtbot.waitUntil(win.pin.isVisible, timeout=5000)
    enter(win.pin, "2020")
    qtbot.waitUntil(lambda: win.pin.title.text() == "New PIN", timeout=SLOW_MS)
    enter(win.pin, "4817")
    qtbot.waitUntil(lambda: win.pin.title.text() == "Repeat the new PIN", timeout=5000)
    enter(win.pin, "4817")
    qtbot.waitUntil(lambda: not win.halt_banner.isVisible(), timeout=SLOW_MS)
    assert win.header.halt_button.text() == "HALT"
    assert resolve(qtbot, host.client.call(host.service.pin_is_default)) is False

    # Halt again, and a wrong PIN does not resume: the old PIN is wrong now, the new one works.
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)
    win.header.halt_button.click()
    qtbot.waitUntil(lambda: win.halt_banner.isVisible(), timeout=SLOW_MS)
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)
    win.header.halt_button.click()
    qtbot.waitUntil(win.pin.isVisible, timeout=5000)
    enter(win.pin, "2020")
    qtbot.waitUntil(lambda: "Wrong PIN" in win.pin.message.text(), timeout=SLOW_MS)
    assert win.halt_banner.isVisible()
    qtbot.waitUntil(lambda: win.pin.keypad.buttons["1"].isEnabled(), timeout=5000)
    enter(win.pin, "4817")
    qtbot.waitUntil(lambda: not win.halt_banner.isVisible(), timeout=SLOW_MS)


def test_lockout_after_five_wrong_pins(kiosk, qtbot):
    # The test engine runs a simulated clock; the lockout is a real-world wait all the same, so the
    # keypad's countdown and the engine's refusal agree (they used to differ by the sim's offset).
    win = kiosk
    win.header.settings_button.click()
    qtbot.waitUntil(win.pin.isVisible, timeout=5000)
    for expected in ("4 tries left", "3 tries left", "2 tries left", "1 try left"):
        enter(win.pin, "9999")
        qtbot.waitUntil(lambda: expected in win.pin.message.text() and win.pin.keypad.buttons["1"].isEnabled(),
                        timeout=SLOW_MS)
    enter(win.pin, "9999")
    qtbot.waitUntil(lambda: win.pin.locked, timeout=SLOW_MS)
    assert not win.pin.keypad.buttons["2"].isEnabled()
    text = win.pin.message.text()
    assert "Locked: try again in" in text
    seconds = int(text.rsplit("in ", 1)[1].split(" s")[0])
    assert 20 <= seconds <= 30  # the engine's 30 s, counted on the wall's clock
    assert win.pin.isVisible() and not win.settings.isVisible()
    win.pin.cancel()
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)


def test_idle_panels_return_to_the_wall(host, qtbot, tmp_path):
    cards = resolve(qtbot, host.client.call(host.service.cards))
    win = KioskWindow(host.service, host.client, host.signals, windowed=True, cards=cards, idle_lock_s=600)
    qtbot.addWidget(win)
    render_png(win, QSize(800, 480), tmp_path / "w.png")
    win.header.settings_button.click()
    pass_pin(win, qtbot)
    qtbot.waitUntil(win.settings.isVisible, timeout=5000)
    # A touch starts the wait again.
    before = win.idle_lock.remaining_ms
    qtbot.wait(250)
    QTest.mouseClick(win.settings.title, Qt.MouseButton.LeftButton)
    assert win.idle_lock.remaining_ms > before
    assert win.settings.isVisible()
    # Left alone, the panel goes (the wait shortened so the test need not sit for a minute).
    win.idle_lock.set_delay(0.3)
    qtbot.waitUntil(lambda: not win.settings.isVisible(), timeout=10_000)
    assert not win.panels_open
    assert "Back to the wall" in win.notice_bar.text
    # A PIN entry left half-typed closes too, and its action does not run.
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)
    win.idle_lock.set_delay(600)
    win.strip.add_tile.click()
    qtbot.waitUntil(win.pin.isVisible, timeout=5000)
    win.pin.press("2")
    win.idle_lock.set_delay(0.3)
    qtbot.waitUntil(lambda: not win.pin.isVisible(), timeout=10_000)
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)
    assert not win.add_dialog.isVisible()


def test_settings_change_pin(kiosk, host, qtbot):
    win = kiosk
    win.header.settings_button.click()
    pass_pin(win, qtbot)
    qtbot.waitUntil(win.settings.isVisible, timeout=5000)
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)
    win.settings.change_pin_button.click()
    qtbot.waitUntil(lambda: win.pin.isVisible() and win.pin.title.text() == "New PIN", timeout=5000)
    enter(win.pin, "86420")
    qtbot.waitUntil(lambda: win.pin.title.text() == "Repeat the new PIN", timeout=5000)
    enter(win.pin, "86420")
    qtbot.waitUntil(lambda: win.settings.message.text() == "PIN changed.", timeout=SLOW_MS)
    assert resolve(qtbot, host.client.call(host.service.verify_pin, "86420")).ok


# -- add ------------------------------------------------------------------------------------------

def test_add_happy_path(kiosk, host, qtbot):
    win = kiosk
    new_id = add_card(win, qtbot, "aapl".upper(), "12500")
    card = win.strip.card(new_id)
    assert card.snapshot.ticker == "AAPL"
    assert card.snapshot.initial_capital == 12500
    assert f"Card #{new_id} created." in win.notice_bar.text
    assert [c.instance_id for c in running_cards(host, qtbot)] == [new_id]


@pytest.fixture
def open_add(kiosk, qtbot):
    win = kiosk
    win.strip.add_tile.click()
    pass_pin(win, qtbot)
    qtbot.waitUntil(lambda: win.add_dialog.isVisible() and win.add_dialog.algorithms_loaded, timeout=SLOW_MS)
    win.add_dialog.select_algorithm("buy_and_hold")
    return win.add_dialog


def _submit_and_wait(dialog, qtbot):
    dialog.create_button.click()
    qtbot.waitUntil(lambda: dialog.error_text != "" and not dialog.busy, timeout=SLOW_MS)


def test_add_unknown_ticker_is_refused_inline(open_add, host, qtbot):
    dialog = open_add
    dialog.type_into("ticker", "TOOLONG")
    # The background check answers while the UI stays responsive.
    qtbot.waitUntil(lambda: "not a ticker" in dialog.note_of("ticker"), timeout=SLOW_MS)
    dialog.type_into("capital", "1000")
    _submit_and_wait(dialog, qtbot)
    assert dialog.isVisible()
    assert running_cards(host, qtbot) == ()


@pytest.mark.parametrize(("capital", "error"), [("0", "more than $0"), ("100000000", "available")])
def test_add_capital_out_of_range_is_refused(open_add, host, qtbot, capital, error):
    dialog = open_add
    dialog.type_into("ticker", "MSFT")
    qtbot.waitUntil(lambda: dialog.note_of("ticker") == "✓ MSFT", timeout=SLOW_MS)
    dialog.type_into("capital", capital)
    _submit_and_wait(dialog, qtbot)
    assert error in dialog.note_of("capital")
    assert running_cards(host, qtbot) == ()


def test_add_bad_parameter_is_refused(open_add, host, qtbot):
    dialog = open_add
    dialog.select_algorithm("sma_crossover")
    dialog.type_into("ticker", "MSFT")
    dialog.type_into("capital", "1000")
    dialog.field("param:slow").box.click()
    dialog.numbers.buttons["CLEAR"].click()
    dialog.numbers.buttons["1"].click()
    _submit_and_wait(dialog, qtbot)
    assert "at least 2" in dialog.note_of("param:slow")
    assert running_cards(host, qtbot) == ()


def test_add_refused_by_the_engine_shows_its_reason(open_add, host, qtbot):
    """The engine's own checks (here: fast >= slow is the algorithm's rule) surface on the form."""
    dialog = open_add
    dialog.select_algorithm("sma_crossover")
    dialog.type_into("ticker", "MSFT")
    dialog.type_into("capital", "1000")
    dialog.field("param:fast").box.click()
    dialog.numbers.buttons["CLEAR"].click()
    for d in "90":
        dialog.numbers.buttons[d].click()
    assert dialog.note_of("param:fast") == ""  # each value is fine on its own
    _submit_and_wait(dialog, qtbot)
    assert "fast" in dialog.error_text and "slow" in dialog.error_text
    assert dialog.isVisible()
    assert running_cards(host, qtbot) == ()


def test_add_cancel_creates_nothing(open_add, kiosk, host, qtbot):
    open_add.type_into("ticker", "MSFT")
    open_add.cancel_button.click()
    qtbot.waitUntil(lambda: not open_add.isVisible() and not kiosk.busy, timeout=5000)
    assert running_cards(host, qtbot) == ()


# -- stop -----------------------------------------------------------------------------------------

def _stop(win, qtbot, instance_id: int, sell: bool) -> None:
    card = win.strip.card(instance_id)
    qtbot.waitUntil(lambda: card.snapshot.shares > 0, timeout=SLOW_MS)  # buy_and_hold bought
    card.tapped.emit(instance_id)
    qtbot.waitUntil(win.detail.isVisible, timeout=5000)
    qtbot.waitUntil(lambda: win.detail.transactions.rowCount() >= 1, timeout=SLOW_MS)
    win.detail.stop_button.click()
    pass_pin(win, qtbot)
    qtbot.waitUntil(lambda: win.detail.choice.isVisible(), timeout=5000)
    qtbot.waitUntil(lambda: not win.busy, timeout=5000)
    (win.detail.sell_button if sell else win.detail.keep_button).click()
    qtbot.waitUntil(lambda: not win.detail.isVisible() and not win.busy, timeout=SLOW_MS)


def test_stop_with_liquidation(kiosk, host, qtbot):
    win = kiosk
    new_id = add_card(win, qtbot)
    _stop(win, qtbot, new_id, sell=True)
    assert "selling" in win.notice_bar.text
    qtbot.waitUntil(lambda: win.strip.card(new_id) is None, timeout=SLOW_MS)
    assert running_cards(host, qtbot) == ()


def test_stop_keeping_the_shares(kiosk, host, qtbot):
    win = kiosk
    new_id = add_card(win, qtbot)
    _stop(win, qtbot, new_id, sell=False)
    assert "stay in the account" in win.notice_bar.text
    qtbot.waitUntil(lambda: win.strip.card(new_id) is None, timeout=SLOW_MS)
    assert running_cards(host, qtbot) == ()


def test_sim_feed_is_ok_from_the_first_frame(host, qtbot):
    # The simulated feed's one "live" is published before any window connects: the window asks.
    status = resolve(qtbot, host.client.call(host.service.stream_status))
    win = KioskWindow(host.service, host.client, host.signals, windowed=True, stream=status)
    qtbot.addWidget(win)
    assert win.header.stream.text() == "SIM FEED ok"


def test_cards_carry_a_friendly_title(kiosk, host, qtbot):
    win = kiosk
    new_id = resolve(qtbot, host.client.call(host.service.create_instance, "NVDA", "sma_crossover", "5000",
                                             {"fast": "5", "slow": "20"}))
    qtbot.waitUntil(lambda: new_id in win.strip.cards, timeout=SLOW_MS)
    card = win.strip.cards[new_id]
    assert card.title_text == "NVDA · SMA 5/20"
    assert card.subtitle.text() == f"#{new_id} · fast 5 · slow 20"
    win.open_detail(new_id)
    assert win.detail.title.text() == "NVDA · SMA 5/20"
    assert card.snapshot.display_name in win.detail.subtitle.text()  # the machine name lives here


def test_settings_show_the_facts_and_the_history_of_stopped_cards(kiosk, host, qtbot):
    from app import __version__
    win = kiosk
    card = resolve(qtbot, host.client.call(host.service.create_instance, "MSFT", "buy_and_hold", "3000", {}))
    resolve(qtbot, host.client.call(host.service.stop_instance, card, False))
    win.header.settings_button.click()
    pass_pin(win, qtbot)
    qtbot.waitUntil(lambda: win.settings.fact("version") == __version__, timeout=SLOW_MS)
    assert win.settings.fact("mode") == "SIM"
    assert win.settings.fact("alerts").startswith("off")
    assert win.settings.fact("sleep") == "never" and win.settings.fact("lock") == "never"
    # The simulator is a cash account: its day trades are not limited (the same sentence as status).
    day_trades = resolve(qtbot, host.client.call(host.service.day_trading))["summary"]
    assert win.settings.fact("day_trades") == day_trades
    assert day_trades.startswith("cash account") and day_trades.endswith("not limited")
    win.settings.history_button.click()
    qtbot.waitUntil(lambda: win.history.table.rowCount() == 1, timeout=SLOW_MS)
    assert win.history.table.item(0, 0).text().startswith(f"#{card} MSFT · Buy & hold")
    assert win.history.total.text().startswith("REALISED")
    win.history.close_button.click()
    assert win.settings.isVisible() and not win.history.isVisible()


def test_quit_and_restart_are_asked_of_the_command(kiosk, qtbot, monkeypatch):
    # The window only records the request and ends the loop; ``autotrader run`` acts on it.
    from PySide6.QtWidgets import QApplication
    quits = []
    monkeypatch.setattr(QApplication, "quit", lambda *a: quits.append(1))
    kiosk.settings.restart_button.click()  # the first tap only asks
    assert kiosk.settings.restart_button.text() == "RESTART? TAP AGAIN"
    qtbot.wait(50)
    assert not quits and kiosk.exit_request is None
    kiosk.settings.restart_button.click()
    qtbot.waitUntil(lambda: bool(quits), timeout=2000)
    assert kiosk.exit_request == "restart"
    kiosk.settings.quit_button.click()
    kiosk.settings.restart_button.click()  # another button disarms the first
    assert kiosk.settings.quit_button.text() == "QUIT"
    kiosk.settings.quit_button.click()
    kiosk.settings.quit_button.click()
    qtbot.waitUntil(lambda: len(quits) == 2, timeout=2000)
    assert kiosk.exit_request == "quit"


def test_the_detail_view_shows_the_cards_last_day_against_its_backtest(kiosk, host, qtbot):
    from datetime import date
    from decimal import Decimal

    from app.engine.backtest.day_check import DayCheck
    from app.engine.backtest.evening import DAY_CHECK_KEY

    win = kiosk
    new_id = resolve(qtbot, host.client.call(host.service.create_instance, "NVDA", "sma_crossover", "5000", {}))
    qtbot.waitUntil(lambda: new_id in win.strip.cards, timeout=SLOW_MS)
    assert resolve(qtbot, host.client.call(host.service.day_check, new_id)) is None  # not checked yet
    win.open_detail(new_id)
    assert not win.detail.day_check.isVisible()
    win.detail.close_view()
    check = DayCheck(new_id, date(2024, 6, 4), live_value=Decimal("4995.90"), backtest_value=Decimal("5000"))
    resolve(qtbot, host.client.call(lambda: host.service.parts.system.set_config(
        DAY_CHECK_KEY.format(card=new_id), check.to_json())))
    win.open_detail(new_id)
    qtbot.waitUntil(win.detail.day_check.isVisible, timeout=SLOW_MS)
    assert win.detail.day_check.text() == "VS BACKTEST Jun 04: live -$4.10 vs backtest, 0 fills"
