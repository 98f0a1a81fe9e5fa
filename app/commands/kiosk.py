"""``autotrader run``: the kiosk (or a headless engine), on Alpaca or the simulated market."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from app.commands.common import (EXIT_FAILED, EXIT_OK, EXIT_QUIT, EXIT_USAGE, CommandError, DataFolderError,
                                 paths_for, storage_sentence)
from app.engine.marketdata.calendar import MarketCalendar

if TYPE_CHECKING:
    from app.engine.marketdata.clock import Clock

log = logging.getLogger("autotrader.ui")


def register(sub: argparse._SubParsersAction) -> None:
    """Add run to the parser."""
    p = sub.add_parser("run", help="start the kiosk (sim market when no Alpaca keys are set)")
    p.add_argument("--sim", action="store_true", help="use the simulated market even if keys are set")
    p.add_argument("--speed", type=float, default=1.0, help="simulated clock speed factor (sim only)")
    p.add_argument("--windowed", action="store_true", help="a normal window instead of full screen")
    p.add_argument("--headless", action="store_true", help="run the engine without a window")
    p.add_argument("--exit-after", type=float, default=None, metavar="SECONDS",
                   help="quit after this many real seconds (soak runs, demos)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("screenshot", help="render the kiosk with a few simulated cards to a PNG (no screen needed)")
    p.add_argument("file", type=Path)
    p.add_argument("--size", default="800x480", help="WIDTHxHEIGHT (default 800x480)")
    p.set_defaults(func=cmd_screenshot)


def sim_start(calendar: MarketCalendar, now: datetime | None = None,
              resume_after: datetime | None = None) -> datetime:
    """Where the simulated clock starts: now when the market is open, else the most recent session open,
    so a newcomer sees cards move at once — but after ``resume_after`` (the last minute an earlier run
    of this data folder cycled): a restarted simulation goes on from there instead of replaying minutes
    it already traded."""
    now = now or datetime.now(timezone.utc)
    if calendar.is_open(now):
        start = now
    else:
        day = calendar.previous_session(now.date()) if not calendar.is_session(now.date()) or \
            now < calendar.session_open(now.date()) else now.date()
        start = calendar.session_open(day)
    if resume_after is not None:
        start = max(start, resume_after + timedelta(minutes=1))
    return start


def last_cycled_minute(system_db: Path) -> datetime | None:
    """The minute the last run over this system.db cycled, or None (no file, no cycle, unreadable)."""
    if not system_db.is_file():
        return None
    from app.engine.system.maintenance import read_last_cycle
    from app.storage.system_store import SystemStore
    from app.storage.timefmt import parse_utc_text
    try:
        with SystemStore(system_db) as store:
            cycle = read_last_cycle(store)
        return parse_utc_text(cycle["minute"]) if cycle else None
    except Exception:  # noqa: BLE001 - a damaged file is the engine's start check to report
        return None


def resume_point(paths) -> datetime | None:
    """Where a restarted simulation goes on from: after the last cycle and after the newest stored bar
    (a restored system.db may be older than the bars), so the simulated clock is never behind its data."""
    latest = last_cycled_minute(paths.system_db)
    if paths.stocks_db.is_file():
        from app.engine.system.data_folder import open_market_store
        from app.storage.timefmt import from_epoch
        try:
            with open_market_store(paths) as market:
                bars = market.latest_bars(market.symbols()).values()
        except Exception:  # noqa: BLE001 - a damaged file is the engine's start check to report
            bars = ()
        for bar in bars:
            latest = max(latest, from_epoch(bar.ts)) if latest else from_epoch(bar.ts)
    return latest


def make_clock(mode: str, speed: float, resume_after: datetime | None = None) -> Clock:
    """Real time for Alpaca; a simulated clock (optionally accelerated) for the sim."""
    from app.engine.marketdata.clock import RealClock, SimClock  # here: other commands start without them

    if mode != "sim":
        if speed != 1.0:
            raise CommandError("--speed only works on the simulated market (use --sim)")
        return RealClock()
    if not speed > 0:
        raise CommandError("--speed must be a positive number")
    return SimClock(sim_start(MarketCalendar(), resume_after=resume_after), speed=speed)


def cmd_run(args: argparse.Namespace) -> int:
    """Start the engine thread and the kiosk window on a qasync loop."""
    if not args.headless:
        # Before anything is created or started: without a display or the plugin's libraries Qt
        # would abort the process with a misleading message.
        from app.commands.qt_platform import window_problem
        problem = window_problem()
        if problem:
            raise CommandError(problem)
    try:
        settings, paths = paths_for(args)
        lock = hold_data_folder(paths.root)
    except DataFolderError as exc:
        return _start_failed(args, str(exc), EXIT_USAGE)
    try:
        return _run(args, settings, paths)
    finally:
        lock.release()


START_RETRY_S = 300.0  # how long the wall shows why it could not start before the process exits


def _start_failed(args: argparse.Namespace, reason: str, code: int) -> int:
    """Say why the kiosk cannot start: one line on stderr and, unless headless, on the screen for five
    minutes (a wall has nobody reading a terminal; the pause keeps a supervisor from restarting in a tight
    loop while still trying again by itself)."""
    print(f"autotrader: {reason}", file=sys.stderr)
    if args.headless:
        return code
    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        from app.ui.start_failure import StartFailureScreen
        app = QApplication.instance() or QApplication(sys.argv[:1])
        screen = StartFailureScreen(reason, windowed=args.windowed,
                                    footer=f"AutoTrader tries again in {START_RETRY_S / 60:.0f} minutes.")
        screen.present()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: app.quit())
        pulse = QTimer()  # let Python see SIGINT/SIGTERM while Qt sleeps
        pulse.timeout.connect(lambda: None)
        pulse.start(500)
        # Then exit, so that `supervise` tries again (a late-mounted disk, a folder made writable).
        QTimer.singleShot(int(min(args.exit_after or START_RETRY_S, START_RETRY_S) * 1000), app.quit)
        app.exec()
    except Exception as exc:  # noqa: BLE001 - no screen at all: the line on stderr is all there is
        print(f"autotrader: (could not show it on screen either: {exc})", file=sys.stderr)
    return code


def hold_data_folder(folder: Path):
    """The data folder's exclusive lock for this kiosk, or the sentence why another one has it."""
    from app.engine.system.folder_lock import FolderLock, FolderLocked
    try:
        return FolderLock(folder).acquire()
    except FolderLocked as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise DataFolderError(storage_sentence(exc, folder)) from None


def _run(args: argparse.Namespace, settings, paths) -> int:
    """The kiosk itself, with the data folder locked."""
    from app.engine.system.logging_setup import configure_logging, register_secret

    try:
        configure_logging(paths.log_dir)
    except OSError as exc:
        return _start_failed(args, storage_sentence(exc, paths.root), EXIT_USAGE)
    register_secret(settings.api_key)
    register_secret(settings.secret)
    from app.engine.system.hardening import warn_exposed_env_files
    warn_exposed_env_files()
    clock = make_clock(settings.mode, args.speed, resume_point(paths) if settings.mode == "sim" else None)
    log.info("starting AutoTrader in %s mode (data in %s)", settings.mode.upper(), paths.root)

    import asyncio

    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication
    import qasync

    from app.engine.host.thread import EngineHost, EngineStartError

    # Headless needs no display: a core application never loads a platform plugin.
    app = QCoreApplication.instance() or (QCoreApplication if args.headless else QApplication)(sys.argv[:1])
    app.setApplicationName("AutoTrader")
    if not args.headless:
        from app.ui.loop_watch import share_the_interpreter
        share_the_interpreter()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    host = EngineHost(settings, clock)
    try:
        host.start()
    except EngineStartError as exc:
        return _start_failed(args, str(exc), EXIT_FAILED)
    window = None
    stream = None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.quit())
    if args.exit_after:
        loop.call_later(args.exit_after, app.quit)
    # Let Python see SIGINT/SIGTERM while Qt sleeps.
    from PySide6.QtCore import QTimer
    pulse = QTimer()
    pulse.timeout.connect(lambda: None)
    pulse.start(500)
    try:
        with loop:
            if not args.headless:
                from app.ui.kiosk_window import KioskWindow
                # The last known cards from system.db, before the first bar arrives.
                # The feed's state too: the simulated feed's one "live" was published before the
                # window connected, which left "FEED ?" on the wall for good.
                cards, account, market, stream_status = loop.run_until_complete(asyncio.gather(
                    host.client.call(host.service.cards), host.client.call(host.service.account),
                    host.client.call(host.service.market_status), host.client.call(host.service.stream_status)))
                window = KioskWindow(host.service, host.client, host.signals, windowed=args.windowed,
                                     cards=cards, account=account, market=market, stream=stream_status,
                                     screen_sleep_s=settings.screen_sleep_min * 60,
                                     idle_lock_s=settings.idle_lock_s)
                # The engine sends only cards that changed since its last publish: one it made while
                # the window was not connected yet would never reach it. Connected now: all again.
                loop.run_until_complete(host.client.call(host.service.republish))
                window.present()
            if settings.mode != "sim":
                from app.engine.alpaca.bar_stream import BarStream
                stream = BarStream.from_settings(settings, paths, host.signals)
                stream.start()
            loop.run_until_complete(_until_quit(app))
    finally:
        if stream:
            stream.stop()
        host.stop()
    request = getattr(window, "exit_request", None)
    if request == "restart":
        log.warning("restart asked for on the wall")
        # The same command in this process (the data folder's lock went with host.stop()); a
        # supervisor keeps waiting on the same pid.
        os.execv(sys.executable, [sys.executable, "-m", "app", *sys.argv[1:]])
    if request == "quit":
        log.warning("quit asked for on the wall")
        return EXIT_QUIT
    return EXIT_OK


async def _until_quit(app) -> None:
    import asyncio  # here: every other command starts without it

    done = asyncio.get_event_loop().create_future()
    app.aboutToQuit.connect(lambda: None if done.done() else done.set_result(None))
    await done


SCREENSHOT_CARDS: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    ("NVDA", "sma_crossover", "10000", {"fast": "5", "slow": "20"}),
    ("AAPL", "buy_and_hold", "8000", {}),
    ("MSFT", "lot_exits", "12000", {}),
    ("TSLA", "sma_crossover", "6000", {}),
)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise CommandError(f"--size {text!r} must look like 800x480") from None
    if not (200 <= width <= 8000 and 200 <= height <= 8000):
        raise CommandError("--size must be between 200 and 8000 pixels each way")
    return width, height


def cmd_screenshot(args: argparse.Namespace) -> int:
    """Run a throw-away sim engine for a simulated hour with a few cards, then render the kiosk."""
    import os
    import tempfile
    import time

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    width, height = _parse_size(args.size)
    import asyncio

    from PySide6.QtCore import QSize
    from PySide6.QtWidgets import QApplication
    import qasync

    from app.engine.host.thread import EngineHost
    from app.engine.marketdata.clock import SimClock
    from app.engine.system.settings import Settings
    from app.ui.kiosk_window import KioskWindow
    from app.ui.screenshot import render_png

    app = QApplication.instance() or QApplication(sys.argv[:1])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    calendar = MarketCalendar()
    today = datetime.now(timezone.utc).date()
    day = calendar.previous_session(today)
    start = calendar.session_open(day)
    with tempfile.TemporaryDirectory(prefix="autotrader-shot-") as folder:
        host = EngineHost(Settings(data_root=Path(folder), sim_forced=True), SimClock(start, speed=3000))
        host.start()
        try:
            with loop:
                for ticker, algorithm, capital, params in SCREENSHOT_CARDS:
                    loop.run_until_complete(host.client.call(host.service.create_instance, ticker, algorithm,
                                                             capital, params))
                deadline = time.monotonic() + 4.0  # ~3 simulated hours of trading
                while time.monotonic() < deadline:
                    app.processEvents()
                    time.sleep(0.02)
                cards, account, market = loop.run_until_complete(asyncio.gather(
                    host.client.call(host.service.cards), host.client.call(host.service.account),
                    host.client.call(host.service.market_status)))
                window = KioskWindow(None, None, None, windowed=True, cards=cards, account=account,
                                     market=market)
                from app.engine.events import StreamStatus
                window.on_stream(StreamStatus("live", simulated=True))
                render_png(window, QSize(width, height), args.file)
        finally:
            host.stop()
    print(f"wrote {args.file} ({width}x{height})")
    return EXIT_OK
