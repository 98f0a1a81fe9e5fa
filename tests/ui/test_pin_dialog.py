"""PIN keypad: masking, backspace, and the real PinGuard (real system.db) behind right/wrong/lockout/default."""

from __future__ import annotations

import asyncio

import pytest
from PySide6.QtCore import QSize
from PySide6.QtWidgets import QLabel

from app.engine.host.client import ServiceError
from app.engine.system.pin import PinError, PinGuard
from app.storage.system_store import SystemStore
from app.ui.keypads import BACK, OK
from app.ui.kiosk_window import KioskWindow
from app.ui.screenshot import render_png


@pytest.fixture
def guard(tmp_path):
    store = SystemStore(tmp_path / "system.db")
    yield PinGuard(store)
    store.close()


@pytest.fixture
def pin(qtbot, qloop, guard, tmp_path):
    """The window's PIN dialog wired to a real PinGuard (called inline: no engine thread needed here)."""
    async def verify(digits):
        return guard.verify(digits)

    async def change(digits):
        try:
            guard.change(digits)
        except PinError as exc:  # what the engine service does with it
            raise ServiceError(str(exc)) from None

    win = KioskWindow(None, None, None, windowed=True)
    qtbot.addWidget(win)
    render_png(win, QSize(800, 480), tmp_path / "w.png")
    win.pin._verify, win.pin._change = verify, change
    return win.pin


def type_pin(dialog, digits: str, ok: bool = True) -> None:
    for d in digits:
        dialog.press(d)
    if ok:
        dialog.press(OK)


def test_masking_and_backspace(pin, qtbot):
    task = asyncio.ensure_future(pin.authorise("test"))
    qtbot.waitUntil(pin.isVisible, timeout=2000)
    type_pin(pin, "123", ok=False)
    assert pin.entered_length == 3
    assert pin.masked_text == "●●●○"
    texts = [w.text() for w in pin.findChildren(QLabel)]
    assert not any("123" in t for t in texts)
    pin.press(BACK)
    assert pin.entered_length == 2
    assert pin.masked_text == "●●○○"
    type_pin(pin, "9999999999", ok=False)
    assert pin.entered_length == 8  # at most 8 digits
    pin.cancel()
    qtbot.waitUntil(task.done, timeout=2000)
    assert task.result() is False
    assert not pin.isVisible()


def test_wrong_then_right_pin(pin, guard, qtbot):
    guard.change("4817")
    task = asyncio.ensure_future(pin.authorise("halt trading"))
    qtbot.waitUntil(pin.isVisible, timeout=2000)
    assert "halt trading" in pin.title.text()
    type_pin(pin, "1111")
    qtbot.waitUntil(lambda: "Wrong PIN" in pin.message.text(), timeout=5000)
    assert "4 tries left" in pin.message.text()
    assert pin.dots.shaking
    assert not task.done()
    type_pin(pin, "4817")
    qtbot.waitUntil(task.done, timeout=5000)
    assert task.result() is True
    assert not pin.isVisible()


def test_lockout_disables_keys_and_counts_down(pin, guard, qtbot):
    guard.change("4817")
    task = asyncio.ensure_future(pin.authorise("stop"))
    qtbot.waitUntil(pin.isVisible, timeout=2000)
    for expected in ("4 tries left", "3 tries left", "2 tries left", "1 try left"):
        type_pin(pin, "0000")
        qtbot.waitUntil(lambda: expected in pin.message.text() and pin.keypad.buttons["1"].isEnabled(),
                        timeout=5000)
    type_pin(pin, "0000")
    qtbot.waitUntil(lambda: pin.locked, timeout=5000)
    assert "try again in" in pin.message.text()
    assert " s" in pin.message.text()
    assert not pin.keypad.buttons["4"].isEnabled()
    pin.cancel()
    qtbot.waitUntil(task.done, timeout=2000)
    assert task.result() is False


def test_default_pin_asks_for_a_new_one(pin, guard, qtbot):
    assert guard.is_default()
    task = asyncio.ensure_future(pin.authorise("open settings"))
    qtbot.waitUntil(pin.isVisible, timeout=2000)
    type_pin(pin, "2020")
    qtbot.waitUntil(lambda: pin.title.text() == "New PIN", timeout=5000)
    assert "factory default" in pin.message.text()
    type_pin(pin, "12")  # too short
    qtbot.waitUntil(lambda: "4 to 8 digits" in pin.message.text(), timeout=2000)
    type_pin(pin, "5817")
    qtbot.waitUntil(lambda: pin.title.text() == "Repeat the new PIN", timeout=2000)
    type_pin(pin, "5679")  # mismatch
    qtbot.waitUntil(lambda: "different" in pin.message.text(), timeout=2000)
    type_pin(pin, "2020")
    qtbot.waitUntil(lambda: pin.title.text() == "Repeat the new PIN", timeout=2000)
    type_pin(pin, "2020")  # the engine refuses the default
    qtbot.waitUntil(lambda: "factory default" in pin.message.text() and pin.title.text() == "New PIN"
                    and pin.keypad.buttons["1"].isEnabled(), timeout=5000)
    type_pin(pin, "5817")
    qtbot.waitUntil(lambda: pin.title.text() == "Repeat the new PIN", timeout=2000)
    type_pin(pin, "5817")
    qtbot.waitUntil(task.done, timeout=5000)
    assert task.result() is True
    assert not guard.is_default()
    assert guard.verify("5817").ok


def test_engine_error_is_shown_not_raised(pin, qtbot):
    async def broken(_digits):
        raise ServiceError("The engine is restarting.")

    pin._verify = broken
    task = asyncio.ensure_future(pin.authorise("stop"))
    qtbot.waitUntil(pin.isVisible, timeout=2000)
    type_pin(pin, "2020")
    qtbot.waitUntil(lambda: pin.message.text() == "The engine is restarting.", timeout=2000)
    assert not task.done()
    pin.cancel()
    qtbot.waitUntil(task.done, timeout=2000)


def test_a_trivial_new_pin_is_refused_on_the_wall_with_the_reason(pin, guard, qtbot):
    task = asyncio.ensure_future(pin.choose_new_pin())
    qtbot.waitUntil(lambda: pin.isVisible() and pin.title.text() == "New PIN", timeout=2000)
    for trivial, reason in (("1111", "one digit repeated"), ("2345", "run of digits"), ("9876", "run of digits"),
                            ("2020", "factory default")):
        type_pin(pin, trivial)
        qtbot.waitUntil(lambda: pin.title.text() == "Repeat the new PIN", timeout=5000)
        type_pin(pin, trivial)
        qtbot.waitUntil(lambda: reason in pin.message.text() and pin.title.text() == "New PIN", timeout=5000)
        assert trivial not in pin.message.text()
        assert not task.done()
    assert guard.is_default()  # nothing was changed by the refused PINs
    type_pin(pin, "4817")
    qtbot.waitUntil(lambda: pin.title.text() == "Repeat the new PIN", timeout=5000)
    type_pin(pin, "4817")
    qtbot.waitUntil(task.done, timeout=5000)
    assert task.result() is True and guard.verify("4817").ok
