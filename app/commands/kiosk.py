"""``autotrader run``: the kiosk (or a headless engine), on Alpaca or the simulated market."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import datetime, timezone

from app.commands.common import EXIT_FAILED, EXIT_OK, CommandError, paths_for
from app.engine.clock import Clock, RealClock, SimClock
from app.engine.logging_setup import configure_logging, register_secret
from app.engine.market_calendar import MarketCalendar

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


def sim_start(calendar: MarketCalendar, now: datetime | None = None) -> datetime:
    """Where the simulated clock starts: now when the market is open, else the most recent session open,
    so a newcomer sees cards move at once."""
    now = now or datetime.now(timezone.utc)
    if calendar.is_open(now):
        return now
    day = calendar.previous_session(now.date()) if not calendar.is_session(now.date()) or \
        now < calendar.session_open(now.date()) else now.date()
    return calendar.session_open(day)


def make_clock(mode: str, speed: float) -> Clock:
    """Real time for Alpaca; a simulated clock (optionally accelerated) for the sim."""
    if mode != "sim":
        if speed != 1.0:
            raise CommandError("--speed only works on the simulated market (use --sim)")
        return RealClock()
    if not speed > 0:
        raise CommandError("--speed must be a positive number")
    return SimClock(sim_start(MarketCalendar()), speed=speed)


def cmd_run(args: argparse.Namespace) -> int:
    """Start the engine thread and the kiosk window on a qasync loop."""
    settings, paths = paths_for(args)
    configure_logging(paths.log_dir)
    register_secret(settings.api_key)
    register_secret(settings.secret)
    clock = make_clock(settings.mode, args.speed)
    log.info("starting AutoTrader in %s mode (data in %s)", settings.mode.upper(), paths.root)

    from PySide6.QtWidgets import QApplication
    import qasync

    from app.engine.engine_host import EngineHost, EngineStartError

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("AutoTrader")
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    host = EngineHost(settings, clock)
    try:
        host.start()
    except EngineStartError as exc:
        print(f"autotrader: {exc}", file=sys.stderr)
        return EXIT_FAILED
    window = None
    stream = None
    if not args.headless:
        from app.ui.kiosk_window import KioskWindow
        window = KioskWindow(host.service, host.client, host.signals, windowed=args.windowed)
        window.show()
    if settings.mode != "sim":
        from app.engine.bar_stream import BarStream
        stream = BarStream.from_settings(settings, paths, host.signals)
        stream.start()
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
            loop.run_until_complete(_until_quit(app))
    finally:
        if stream:
            stream.stop()
        host.stop()
    return EXIT_OK


async def _until_quit(app) -> None:
    done = asyncio.get_event_loop().create_future()
    app.aboutToQuit.connect(lambda: done.done() or done.set_result(None))
    await done
