"""Benchmark of the UI thread's longest stall: how long its event loop goes without turning.

A ``LoopWatch`` (a 1 ms precise timer) runs on the UI loop while each scenario plays, offscreen:

- ``detail_10k``: opening the detail view of a card with 10,000 fills (after one small card's open);
- ``bars_500``: the live bar stream's flush of a burst of one bar for each of 500 symbols, done
  the way ``BarStream`` does it, while another connection (the engine) keeps writing stocks.db;
- ``backtest``: a year's backtest started as the add dialog starts one (the kiosk's BacktestJobs: a
  worker process simulates and replays the year) with its progress and result in the backtest view;
- ``cards_50``: 50 cards updated with new figures, ten rounds, sent from another thread (as from the
  engine thread) through the engine's publisher (only changed cards travel) to the card strip (only
  their widgets are touched, a slice per turn).

The interpreter is shared as the kiosk shares it (``share_the_interpreter``). Prints one line per
scenario and, last, one JSON object: ``longest_stall_ms`` per scenario
(target <= 16 each: one frame at 60 Hz).

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_ui_stalls.py [--only cards_50]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from PySide6.QtCore import QSize  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from app.storage.records import Bar, TransactionRecord  # noqa: E402
from app.ui import theme  # noqa: E402
from app.ui.loop_watch import LoopWatch, share_the_interpreter  # noqa: E402
from tests.ui.samples import snapshot  # noqa: E402


def pump(app: QApplication, seconds: float, until=lambda: False) -> None:
    """Run the UI loop for ``seconds`` (or until ``until()``)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not until():
        app.processEvents()
        time.sleep(0.0005)


def watched(app: QApplication, action, settle_s: float = 0.2, until=lambda: False) -> float:
    """The longest loop gap (ms) while ``action()`` runs from the loop and the loop settles after."""
    from PySide6.QtCore import QTimer

    watch = LoopWatch()
    watch.start()
    QTimer.singleShot(0, action)
    pump(app, settle_s, until)
    return watch.stop()


def detail_10k(app: QApplication, parent: QWidget) -> float:
    from app.ui.detail_view import DetailView

    n = 10_000
    fills = tuple(TransactionRecord(n - k, 1, "buy" if k % 2 else "sell", 1 + k % 9, 100.0 + k % 50 / 10,
                                    f"2025-03-{1 + k // 1000 % 28:02d}T15:{k % 60:02d}:00Z", None)
                  for k in range(n))
    view = DetailView(parent, theme.Metrics.for_size(QSize(1024, 600)))

    def open_card(instance_id: int, rows: tuple) -> None:
        view.show_snapshot(snapshot(instance_id))
        view.open_overlay()
        view.set_transactions(rows)

    watched(app, lambda: open_card(2, fills[:5]))  # once before: styles and fonts are set up on first show
    view.close_view()
    return watched(app, lambda: open_card(1, fills))


def bars_500(app: QApplication, root: Path) -> float:
    from app.engine.alpaca.bar_stream import BarStream
    from app.engine.marketdata.calendar import MarketCalendar
    from app.storage.market_store import MarketStore
    from app.storage.records import BarSource

    cal = MarketCalendar()
    path = root / "stocks.db"
    MarketStore(path).close()
    stream = BarStream("key", "secret", url="ws://127.0.0.1:9/v2/iex", feed="iex", store_path=path, calendar=cal)
    symbols = [f"S{i:03d}" for i in range(500)]
    minute = int(datetime(2024, 6, 4, 14, 0, tzinfo=timezone.utc).timestamp())
    stop = threading.Event()

    def engine_writes() -> None:  # the engine's own bar writes (sim feed, backfill) on its connection
        with MarketStore(path, shared=True) as other:
            k = 0
            while not stop.is_set():
                other.upsert_many({"ENGN": [Bar(minute - 86_400 * 30 + 60 * k, 1, 1, 1, 1, 1)]},
                                  source=BarSource.ALPACA)
                k += 1
                time.sleep(0.002)

    writer = threading.Thread(target=engine_writes, daemon=True)
    writer.start()
    longest = 0.0
    try:
        for round_ in range(5):
            ts = minute + 60 * round_

            def burst(ts: int = ts) -> None:
                stream._pending = [(s, Bar(ts, 10, 11, 9, 10, 100)) for s in symbols]
                stream._flush(emit=True)

            longest = max(longest, watched(app, burst, 0.1))
    finally:
        stop.set()
        writer.join()
        stream.stop()
    return longest


def backtest(app: QApplication, parent: QWidget, root: Path) -> float:
    """A year's backtest as the add dialog runs one: the kiosk's BacktestJobs (its own worker process,
    which simulates the year's bars and replays them), progress hopping to the UI loop at the dialog's
    pace into the real backtest view, and the result shown there at the end."""
    from PySide6.QtCore import QObject, Signal

    from app.engine.backtest.jobs import BacktestJobs
    from app.engine.backtest.replay import BacktestRequest
    from app.engine.plugins.pool import worker_context
    from app.engine.system.settings import Settings
    from app.ui.add_dialog import PROGRESS_HOP_S
    from app.ui.backtest_view import BacktestView

    class Hop(QObject):  # the dialog's call_soon_threadsafe, as a queued signal
        moved = Signal(float)
        ended = Signal(object)

    view = BacktestView(parent, theme.Metrics.for_size(QSize(1024, 600)))
    hop = Hop()
    hop.moved.connect(view.set_progress)
    hop.ended.connect(view.show_result)
    request = BacktestRequest("sma_crossover", "AAPL", date(2024, 1, 1), date(2024, 12, 31),
                              capital=Decimal(10_000), params={"fast": 20, "slow": 50})
    jobs = BacktestJobs(Settings(data_root=root / "backtest-data", sim_forced=True))
    # The kiosk's engine started its card workers from the fork server at start (WorkerPool.warm),
    # so the server is up when a backtest asks it for a process: start it here as that did.
    warm = worker_context().Process(target=time.sleep, args=(0,))
    warm.start()
    warm.join()
    shown = threading.Event()
    hopped = [0.0]

    def progress(fraction: float) -> None:  # on the job's thread
        now = time.monotonic()
        if now - hopped[0] >= PROGRESS_HOP_S:
            hopped[0] = now
            hop.moved.emit(fraction)

    def run() -> None:
        view.show_running("BACKTEST  AAPL · SMA 20/50", "$10,000.00 · 2024", 252)
        view.open_overlay()
        future = jobs.start(request, progress)[1]
        future.add_done_callback(lambda f: (hop.ended.emit(f.result()), shown.set()))

    stall = watched(app, run, 300, until=shown.is_set)
    return max(stall, watched(app, lambda: None, 0.3))  # the result's first paint


def cards_50(app: QApplication, parent: QWidget) -> float:
    """Ten rounds of 50 changed cards, sent as the engine sends them: through the one publisher,
    which passes on only the cards that changed, to the strip as the kiosk connects it."""
    from app.engine.host.signals import EngineSignals, QtPublisher
    from app.ui.card_strip import CardStrip

    strip = CardStrip(theme.Metrics.for_size(QSize(1024, 600)), parent)
    strip.resize(1024, 600)
    strip.show()
    signals = EngineSignals()
    signals.cards_changed.connect(strip.apply)
    publisher = QtPublisher(signals)
    base = [snapshot(i, ticker=f"T{i:02d}") for i in range(1, 51)]
    publisher.cards(tuple(base))
    pump(app, 0.2, lambda: not strip.pending)
    pump(app, 0.2)
    longest = 0.0
    for round_ in range(10):
        fresh = tuple(replace(s, price=Decimal(100 + round_), pnl=Decimal(round_ - 5)) for s in base)

        def publish(fresh: tuple = fresh) -> None:  # from another thread, as the engine thread does
            threading.Thread(target=publisher.cards, args=(fresh,)).start()

        longest = max(longest, watched(app, publish, 0.05))
    return longest


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=("detail_10k", "bars_500", "backtest", "cards_50"),
                        help="run only this scenario (repeatable)")
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication([])
    share_the_interpreter()  # as the kiosk does
    parent = QWidget()
    parent.resize(1024, 600)
    parent.show()
    pump(app, 0.3)
    from app.engine.system.heap import settle_after_start
    settle_after_start()  # as the kiosk's orchestrator does once started: full collections skip start-up
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_ui_stalls_") as tmp:
        for name, run in (("detail_10k", lambda: detail_10k(app, parent)),
                          ("bars_500", lambda: bars_500(app, Path(tmp))),
                          ("backtest", lambda: backtest(app, parent, Path(tmp))),
                          ("cards_50", lambda: cards_50(app, parent))):
            if args.only and name not in args.only:
                continue
            results[name] = round(run(), 1)
            print(f"{name}: longest stall {results[name]} ms", flush=True)
    print(json.dumps({"longest_stall_ms": results, "target_ms": 16}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
