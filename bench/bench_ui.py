"""Kiosk UI speed: one round of updates to 50 cards, and process start to the first painted frame.

Prints progress, then one JSON object on its last line with keys cards, update_median_ms,
first_frame_s. Targets on a 2-vCPU machine: <= 16 ms per full update round, <= 2 s to first frame.

update: a real EngineSignals.cards_changed emission carrying 50 new CardSnapshots, handled by the
real KioskWindow (all 50 cards take their new figures), then the window repainted synchronously —
what the wall shows (update_median_ms). As a harsher extra figure, render_all_cards_ms also paints
every one of the 50 cards, including those scrolled out of view, into an off-screen pixmap.
first frame: a child process that starts a real sim engine, builds the window with
the engine's cards and reports when the window's first paint event finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CARDS = 50
ROUNDS = 40


def first_frame_child(data_dir: str) -> None:
    """Run in the child: engine + window; print the wall time of the first finished paint."""
    from PySide6.QtCore import QEvent, QObject, QSize
    from PySide6.QtWidgets import QApplication

    from app.engine.host.thread import EngineHost
    from app.engine.system.settings import Settings
    from app.engine.marketdata.clock import SimClock
    from app.engine.marketdata.calendar import MarketCalendar
    from app.ui.kiosk_window import KioskWindow
    import asyncio
    import qasync
    from datetime import datetime, timezone

    app = QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    cal = MarketCalendar()
    start = cal.session_open(cal.previous_session(datetime.now(timezone.utc).date()))
    host = EngineHost(Settings(data_root=Path(data_dir), sim_forced=True), SimClock(start, speed=1))
    host.start()

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 - Qt naming
            if event.type() == QEvent.Type.Paint:
                QApplication.instance().postEvent(obj, QEvent(QEvent.Type.User))
                self.painted = True
            elif event.type() == QEvent.Type.User and getattr(self, "painted", False):
                print(json.dumps({"first_frame_at": time.time()}), flush=True)
                app.quit()
            return False

    with loop:
        cards, account, market = loop.run_until_complete(asyncio.gather(
            host.client.call(host.service.cards), host.client.call(host.service.account),
            host.client.call(host.service.market_status)))
        window = KioskWindow(host.service, host.client, host.signals, windowed=True, cards=cards,
                             account=account, market=market)
        watcher = FirstPaint()
        window.installEventFilter(watcher)
        window.resize(QSize(800, 480))
        window.show()
        app.exec()
    host.stop()


def measure_first_frame() -> float:
    """Seconds from spawning a fresh interpreter to its first painted kiosk frame."""
    import tempfile
    with tempfile.TemporaryDirectory() as data_dir:
        started = time.time()
        out = subprocess.run([sys.executable, __file__, "--first-frame-child", data_dir], capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise SystemExit(f"child failed: {out.stderr[-2000:]}")
        return json.loads(lines[-1])["first_frame_at"] - started


def measure_updates() -> tuple[list[float], list[float]]:
    """Milliseconds per round: signal -> 50 cards updated and the window repainted; and -> all 50 painted."""
    from PySide6.QtCore import QSize
    from PySide6.QtWidgets import QApplication

    from app.engine.host.signals import EngineSignals
    from app.ui.kiosk_window import KioskWindow
    from tests.ui import samples

    app = QApplication.instance() or QApplication([])
    signals = EngineSignals()
    base = tuple(samples.snapshot(i + 1, pnl=str((i % 7 - 3) * 25), price=f"{100 + i}.00",
                                  ticker=("AAPL", "MSFT", "NVDA", "TSLA", "AMD")[i % 5]) for i in range(CARDS))
    window = KioskWindow(None, None, signals, windowed=True, cards=base)
    window.resize(QSize(1280, 720))
    window.show()
    for _ in range(5):
        app.processEvents()
    from PySide6.QtGui import QPixmap
    cards = list(window.strip.cards.values())
    assert len(cards) == CARDS
    canvas = QPixmap(cards[0].size())
    visible, everything = [], []
    for rnd in range(ROUNDS):
        delta = Decimal(rnd % 9 - 4) * Decimal("13.37")
        update = tuple(replace(s, pnl=s.pnl + delta, value=s.value + delta, price=s.price + delta / 10,
                               sparkline=s.sparkline[1:] + s.sparkline[:1]) for s in base)
        t0 = time.perf_counter()
        signals.cards_changed.emit(update)
        window.repaint()
        visible.append((time.perf_counter() - t0) * 1000)
        update = tuple(replace(s, pnl=s.pnl - delta) for s in update)
        t0 = time.perf_counter()
        signals.cards_changed.emit(update)
        for card in cards:
            card.render(canvas)
        everything.append((time.perf_counter() - t0) * 1000)
        if window.strip.card(1).pnl.text() == "":
            raise SystemExit("cards did not update")
    window.close()
    return visible, everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first-frame-child", metavar="DATA_DIR")
    args = parser.parse_args()
    if args.first_frame_child:
        first_frame_child(args.first_frame_child)
        return
    timings, all_cards = measure_updates()
    print(f"update rounds: {len(timings)}; min {min(timings):.2f} ms, max {max(timings):.2f} ms; "
          f"all 50 painted: median {statistics.median(all_cards):.2f} ms")
    first = min(measure_first_frame() for _ in range(3))
    print(f"first frame (best of 3): {first:.2f} s")
    print(json.dumps({"cards": CARDS, "update_median_ms": round(statistics.median(timings), 2),
                      "first_frame_s": round(first, 2),
                      "render_all_cards_ms": round(statistics.median(all_cards), 2)}))


if __name__ == "__main__":
    main()
