"""UI test fixtures: an asyncio (qasync) loop that runs whenever pytest-qt processes Qt events, and windows."""

from __future__ import annotations

import asyncio

import pytest
import qasync
from PySide6.QtCore import QSize

from app.ui.kiosk_window import KioskWindow
from app.ui.screenshot import render_png
from tests.ui import samples


@pytest.fixture(scope="session")
def _session_loop(qapp):
    # One loop for the session: stopping a qasync loop calls QApplication.exit(), after which a
    # second "already running" loop in the same process no longer gets its callbacks run.
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)


@pytest.fixture
def qloop(qapp, _session_loop):
    """The qasync loop, marked as running, so tasks advance inside ``qtbot.wait``/``waitUntil``.

    Tasks a test leaves behind are cancelled afterwards.
    """
    asyncio.events._set_running_loop(_session_loop)
    asyncio.set_event_loop(_session_loop)
    yield _session_loop
    leftovers = [t for t in asyncio.all_tasks(_session_loop) if not t.done()]
    for task in leftovers:
        task.cancel()
    for _ in range(3):
        qapp.processEvents()


@pytest.fixture
def window(qtbot, qloop, tmp_path):
    """A display-only kiosk window (no engine) with the sample cards, laid out at 800×480."""
    win = KioskWindow(None, None, None, windowed=True, cards=samples.sample_cards(),
                      market=samples.sample_market(), stream=samples.sample_stream(),
                      account=samples.sample_account("paper"))
    qtbot.addWidget(win)
    render_png(win, QSize(800, 480), tmp_path / "window.png")
    return win
