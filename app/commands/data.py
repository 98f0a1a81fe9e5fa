"""``autotrader bars`` and ``autotrader import-bars``: minute bars in and out as CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.commands.common import (EXIT_OK, CommandError, day_range_utc, parse_day, paths_for)
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

    p = sub.add_parser("import-bars", help="load minute bars from a CSV file (all of it or nothing)",
                       description="Import minute bars from FILE. A file with a symbol column (as alpaca-py "
                                   "exports) may hold several symbols; name SYMBOL to import only a file "
                                   "whose rows are all that symbol, or a file without a symbol column.")
    p.add_argument("targets", nargs="+", metavar="[SYMBOL] FILE", help="the ticker (optional) and the CSV file")
    p.add_argument("--regular-hours-only", action="store_true",
                   help="drop pre-market and after-hours rows (refused otherwise) and say how many")
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
    from app.engine.marketdata.bar_csv import write_bars_csv  # here: other commands start without it

    write_bars_csv(bars, sys.stdout)  # a reader closing the pipe is handled quietly by app.cli
    if not bars:
        print(f"no bars stored for {symbol} in that range", file=sys.stderr)
    return EXIT_OK


def cmd_import_bars(args: argparse.Namespace) -> int:
    """Import a whole file in one transaction, or nothing with every refused row named by line."""
    from app.engine.marketdata.bar_csv import BarCsvError  # here: other commands start without them
    from app.engine.marketdata.bar_import import import_bars_file

    if len(args.targets) > 2:
        raise CommandError("import-bars takes [SYMBOL] FILE")
    symbol = _symbol(args.targets[0]) if len(args.targets) == 2 else None
    path = Path(args.targets[-1])
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    calendar = MarketCalendar()
    _, paths = paths_for(args)
    try:
        with open_market_store(paths, calendar) as store:
            summary = import_bars_file(path, store, calendar, symbol=symbol,
                                       regular_hours_only=args.regular_hours_only)
    except BarCsvError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        more = exc.problem_count - len(exc.problems)
        if more > 0:
            print(f"... and {more:,} more", file=sys.stderr)
        raise CommandError(str(exc)) from None
    print("\n".join(summary.lines()))
    return EXIT_OK
