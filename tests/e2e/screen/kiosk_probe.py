"""A cheap launch of the real KioskWindow on whatever display the environment names, for screen tests.

``python -m tests.e2e.screen.kiosk_probe [--windowed] [--settle S] [--shot FILE] [--hold]`` builds the kiosk
with the sample cards (no engine), presents it exactly as ``autotrader run`` does, lets it settle and
prints one JSON line: the screen, the window's geometry as Qt sees it, its X window id (on X), the
layout metrics and the pixel sizes of the fonts that must read from across the room. With ``--hold``
the window stays up after that line, printing a fresh one for every line read on stdin, until stdin
closes: a Wayland client cannot read its own position, so the test asks the compositor meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from datetime import datetime, timedelta, timezone

from PySide6.QtGui import QFontInfo, QGuiApplication
from PySide6.QtWidgets import QApplication

from app.engine.events import MarketStatus
from app.engine.marketdata.calendar import MarketCalendar
from app.ui import theme
from app.ui.kiosk_window import KioskWindow
from tests.ui import samples
from tests.e2e.screen.xvfb import x_geometry


def font_px(widget) -> int:
    """The pixel size of the font a widget actually renders with."""
    return QFontInfo(widget.font()).pixelSize()


def report(window: KioskWindow) -> dict:
    """What the screen tests check, as plain data."""
    screen = window.screen()
    geo, frame = window.geometry(), window.frameGeometry()
    handle = window.windowHandle()
    # The decorations the platform plugin draws itself (Qt's wayland plugin without server-side ones).
    margins = handle.frameMargins() if handle is not None else None
    card = window.strip.card(1)
    header = window.header
    from tests.ui.test_layout import layout_problems
    return {
        "platform": QGuiApplication.platformName(),
        "screen": [screen.geometry().x(), screen.geometry().y(), screen.geometry().width(),
                   screen.geometry().height()],
        "geometry": [geo.x(), geo.y(), geo.width(), geo.height()],
        "frame": [frame.x(), frame.y(), frame.width(), frame.height()],
        "margins": [margins.left(), margins.top(), margins.right(), margins.bottom()] if margins is not None else None,
        "window_id": int(window.winId()),
        "scale": window.metrics.scale,
        "expected_scale": theme.Metrics.for_size(window.size()).scale,
        "fonts": {
            "header_value": font_px(header.value),
            "header_day": font_px(header.pnl),
            "card_pnl": font_px(card.pnl),
            "card_title": font_px(card.title),
            "card_price": font_px(card.price),
        },
        "problems": layout_problems(window),
    }


def main(argv: list[str] | None = None) -> int:
    """Show the kiosk, wait ``--settle`` seconds of event processing after it is exposed, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--windowed", action="store_true")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--shot", default=None, help="save a grab of the whole screen as PNG")
    parser.add_argument("--closed", action="store_true", help="the market is closed (night header)")
    parser.add_argument("--hold", action="store_true", help="keep the window up until stdin closes")
    args = parser.parse_args(argv)
    app = QApplication(sys.argv[:1])
    market, account = samples.sample_market(True), samples.sample_account("paper")
    if args.closed:  # a simulated evening, 19:58 ET, from the real calendar: the header counts down
        calendar = MarketCalendar()
        evening = calendar.next_close(datetime.now(timezone.utc)) + timedelta(hours=3, minutes=58)
        market = MarketStatus(False, evening, calendar.next_open(evening), calendar.next_close(evening))
        account = samples.sample_account("sim")
    window = KioskWindow(None, None, None, windowed=args.windowed, cards=samples.sample_cards(), market=market,
                         stream=samples.sample_stream(), account=account)
    window.present()
    deadline = time.monotonic() + 20
    while not window.windowHandle() or not window.windowHandle().isExposed():
        app.processEvents()
        if time.monotonic() > deadline:
            print(json.dumps({"error": "the window was never exposed"}))
            return 1
        time.sleep(0.01)
    until = time.monotonic() + args.settle
    while time.monotonic() < until:
        app.processEvents()
        time.sleep(0.01)
    if args.shot:
        window.screen().grabWindow(0).save(args.shot, "PNG")
    print(json.dumps(full_report(window)), flush=True)
    while args.hold and _wait_for_stdin(app):
        print(json.dumps(full_report(window)), flush=True)
    window.close()
    return 0


def full_report(window: KioskWindow) -> dict:
    """``report`` plus the X server's own record of the top-level window (None off X or without xwininfo)."""
    data = report(window)
    handle = window.windowHandle()
    on_x = data["platform"] == "xcb" and handle is not None
    data["x_geometry"] = x_geometry(os.environ.get("DISPLAY", ""), int(handle.winId())) if on_x else None
    return data


def _wait_for_stdin(app: QApplication) -> bool:
    """Process events until stdin has a line (True) or is closed (False)."""
    while not select.select([sys.stdin], [], [], 0.02)[0]:
        app.processEvents()
    return bool(sys.stdin.readline())


if __name__ == "__main__":
    sys.exit(main())
