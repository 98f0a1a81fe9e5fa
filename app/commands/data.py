"""``autotrader bars`` and ``autotrader import-bars``: minute bars in and out as CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.commands.common import (EXIT_OK, CommandError, day_range_utc, parse_day, paths_for)
from app.engine.marketdata.bar_csv import BarCsvError, check_file, good_bars, write_bars_csv
from app.engine.brokers.protocol import InvalidSymbol, check_symbol_format
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.system.data_folder import open_market_store
from app.storage.timefmt import to_epoch


def _symbol(text: str) -> str:
    try:
        return check_symbol_format(text)
    except InvalidSymbol as exc:
        raise CommandError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the data commands to the parser."""
    p = sub.add_parser("bars", help="print stored minute bars as CSV")
    p.add_argument("symbol")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--last", type=int, metavar="N", help="the last N stored bars")
    group.add_argument("--start", metavar="D", help="first New York day YYYY-MM-DD (with --end)")
    p.add_argument("--end", metavar="D", help="last New York day YYYY-MM-DD, inclusive")
    p.add_argument("--sim", action="store_true", help="read the simulated market's data")
    p.set_defaults(func=cmd_bars)

    p = sub.add_parser("import-bars", help="load minute bars from a CSV file")
    p.add_argument("symbol")
    p.add_argument("file", type=Path)
    p.add_argument("--sim", action="store_true", help="import into the simulated market's data")
    p.set_defaults(func=cmd_import_bars)


def cmd_bars(args: argparse.Namespace) -> int:
    """Print bars as ``timestamp,open,high,low,close,volume``."""
    symbol = _symbol(args.symbol)
    _, paths = paths_for(args)
    with open_market_store(paths) as store:
        if args.last is not None:
            if args.last < 1:
                raise CommandError("--last needs a positive number of bars")
            latest = store.latest_bar(symbol)
            bars = [] if latest is None else store.last_bars(symbol, args.last, latest.ts + 1)
        else:
            if not args.end:
                raise CommandError("--start needs --end")
            begin, finish = day_range_utc(parse_day(args.start, "--start"), parse_day(args.end, "--end"))
            bars = store.bars_between(symbol, to_epoch(begin), to_epoch(finish) - 1)
    write_bars_csv(bars, sys.stdout)
    if not bars:
        print(f"no bars stored for {symbol} in that range", file=sys.stderr)
    return EXIT_OK


def cmd_import_bars(args: argparse.Namespace) -> int:
    """Check the whole file first; import only a clean file, in one transaction."""
    symbol = _symbol(args.symbol)
    if not args.file.is_file():
        raise CommandError(f"{args.file}: no such file")
    calendar = MarketCalendar()
    try:
        check = check_file(args.file, calendar.is_session_minute)
    except BarCsvError as exc:
        raise CommandError(str(exc)) from None
    if check.problem_count:
        for problem in check.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        more = check.problem_count - len(check.problems)
        if more > 0:
            print(f"... and {more} more", file=sys.stderr)
        raise CommandError(f"{check.problem_count} bad row(s) in {args.file}: nothing imported")
    _, paths = paths_for(args)
    with open_market_store(paths, calendar) as store:
        result = store.upsert_bars(symbol, good_bars(args.file, calendar.is_session_minute))
    print(f"imported {result.stored} bars for {symbol} from {args.file}")
    return EXIT_OK
