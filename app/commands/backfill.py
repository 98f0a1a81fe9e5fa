"""``autotrader backfill SYMBOL --start D --end D``: fetch minute bars from Alpaca into stocks.db."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from app.commands.common import (EXIT_FAILED, EXIT_OK, CommandError, fail, parse_day, paths_for,
                                 settings_for)
from app.engine.brokers.protocol import InvalidSymbol, check_symbol_format
from app.engine.marketdata.calendar import CalendarRangeError, MarketCalendar
from app.engine.system.data_folder import open_market_store

SIM_MESSAGE = ("backfill needs Alpaca keys (ALPACA_API_KEY/ALPACA_SECRET); "
               "the simulated market makes its own bars")
_BAR_WIDTH = 30


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backfill`` to the parser."""
    p = sub.add_parser("backfill", help="fetch minute bars from Alpaca for a date range")
    p.add_argument("symbol", help="ticker, e.g. AAPL")
    p.add_argument("--start", required=True, metavar="D", help="first New York day YYYY-MM-DD")
    p.add_argument("--end", required=True, metavar="D", help="last New York day YYYY-MM-DD, inclusive")
    p.set_defaults(func=cmd_backfill)


class Progress:
    """A redrawn bar on a terminal; a plain line every ~10 % (or 2 s) otherwise."""

    def __init__(self, stream: TextIO, symbol: str) -> None:
        self._out = stream
        self._tty = stream.isatty()
        self._symbol = symbol
        self._last_pct = -100
        self._last_at = 0.0

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        pct = done * 100 // total
        if self._tty:
            filled = _BAR_WIDTH * done // total
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            self._out.write(f"\r{self._symbol} [{bar}] {done}/{total} sessions")
            if done >= total:
                self._out.write("\n")
            self._out.flush()
            return
        now = time.monotonic()
        if done >= total or pct - self._last_pct >= 10 or now - self._last_at >= 2.0:
            self._last_pct, self._last_at = pct, now
            print(f"{self._symbol}: {done}/{total} sessions fetched ({pct}%)", file=self._out, flush=True)


def cmd_backfill(args: argparse.Namespace) -> int:
    """Fetch the sessions coverage lacks and print what was done."""
    from app.engine.alpaca.history import AlpacaHistory, MarketDataError, MarketDataUnavailable

    try:
        symbol = check_symbol_format(args.symbol)
    except InvalidSymbol as exc:
        raise CommandError(str(exc)) from None
    start, end = parse_day(args.start, "--start"), parse_day(args.end, "--end")
    if end < start:
        raise CommandError(f"the end date {end} is before the start date {start}")
    if settings_for(args).mode == "sim":  # before paths_for: a refused command creates no folders
        raise CommandError(SIM_MESSAGE)
    settings, paths = paths_for(args)
    calendar = MarketCalendar()
    with open_market_store(paths, calendar) as store:
        history = AlpacaHistory.from_settings(settings, store, calendar)
        print(f"backfilling {symbol} {start} to {end} from Alpaca ({settings.feed.upper()} feed) "
              f"into {paths.stocks_db}", flush=True)
        try:
            summary = history.backfill(symbol, start, end, progress=Progress(sys.stdout, symbol))
        except CalendarRangeError as exc:
            raise CommandError(str(exc)) from None
        except MarketDataUnavailable as exc:
            # Sessions finished before the failure stay stored and covered: a re-run continues.
            return fail(f"{exc}; run the command again to continue", EXIT_FAILED)
        except MarketDataError as exc:
            raise CommandError(str(exc)) from None
    print(f"{symbol}: {summary.sessions_fetched} session(s) fetched, {summary.bars_stored} bars stored, "
          f"{summary.sessions_present} session(s) already present")
    return EXIT_OK
