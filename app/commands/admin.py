"""Headless administration over SSH: ``algorithms``, ``add``, ``stop``, ``status``.

Same validation as the kiosk, no PIN (the shell is already trusted). They open the mode's files
directly; SQLite WAL lets them work while the kiosk runs, and the kiosk picks up changes at its
next cycle.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from contextlib import contextmanager
from decimal import Decimal

from typing import TYPE_CHECKING

from app.commands.common import EXIT_OK, CommandError, DataFolderError, paths_for, settings_for, storage_sentence
from app.engine.plugins.loader import default_dirs, discover
from app.engine.portfolio.money import format_money, format_pct
from app.storage.errors import StorageUnavailable

if TYPE_CHECKING:
    from app.engine.marketdata.clock import Clock

# The engine's wiring (Qt core, the sim market, the service) is imported by the commands that build
# it, not at start: every command, ``autotrader backtest`` included, would pay for it (~0.3 s).


def register(sub: argparse._SubParsersAction) -> None:
    """Add the admin commands to the parser."""
    p = sub.add_parser("algorithms", help="list algorithm files, broken ones with their error")
    p.set_defaults(func=cmd_algorithms)

    p = sub.add_parser("add", help="start a card: SYMBOL ALGORITHM CAPITAL")
    p.add_argument("symbol")
    p.add_argument("algorithm")
    p.add_argument("capital")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="algorithm parameter")
    p.add_argument("--sim", action="store_true", help="act on the simulated market")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("stop", help="stop a card by id")
    p.add_argument("id", type=int)
    p.add_argument("--liquidate", action="store_true", help="sell its shares at market first")
    p.add_argument("--sim", action="store_true", help="act on the simulated market")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", help="mode, market, stream, last cycle and every running card")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--sim", action="store_true", help="the simulated market's status")
    p.set_defaults(func=cmd_status)


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["fast=10", "slow=30"]`` → dict; malformed pairs are a CommandError."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--param {pair!r} must look like name=value")
        params[key.strip()] = value.strip()
    return params


def admin_clock(settings, paths) -> Clock:
    """The time an admin command works at: real time for Alpaca; in sim, the simulated time the running
    (or last) engine recorded at its last cycle, never the real clock against simulated bars that may lie
    days ahead of it. A sim folder no engine ever cycled uses real time."""
    from app.engine.marketdata.clock import RealClock
    from app.engine.system.maintenance import RecordedClock

    return RecordedClock(paths.system_db) if settings.mode == "sim" else RealClock()


@contextmanager
def service_for(args: argparse.Namespace):
    """An EngineService over the mode's files for this process."""
    from app.engine.host.service import EngineService
    from app.engine.host.wiring import EngineParts

    settings, paths = paths_for(args)
    try:
        parts = EngineParts.build(settings, clock=admin_clock(settings, paths), paths=paths)
    except (OSError, sqlite3.Error, StorageUnavailable) as exc:
        raise DataFolderError(storage_sentence(exc, paths.root)) from None
    # Beside a running engine its feed prepares a new card's bars; two processes must not write them.
    from app.engine.system.folder_lock import running_engine_pid
    try:
        yield EngineService(parts, prepare_feed=running_engine_pid(paths.root) is None)
    finally:
        parts.close()


def cmd_algorithms(args: argparse.Namespace) -> int:
    """Print the catalogue."""
    settings = settings_for(args)
    for info in discover(default_dirs(settings.algorithm_dirs)):
        if info.ok:
            params = ", ".join(f"{name}={p.default}" for name, p in info.parameters.items())
            print(f"{info.algorithm_type:<16} {info.name} — {info.description}" + (f" [{params}]" if params else ""))
        else:
            print(f"{info.algorithm_type:<16} BROKEN: {info.error} ({info.path})")
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    """Create an instance; prints its id."""
    from app.engine.host.client import ServiceError

    params = parse_params(args.param)
    with service_for(args) as service:
        try:
            instance_id = service.create_instance(args.symbol, args.algorithm, args.capital, params)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
    print(instance_id)
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop an instance, optionally selling its shares."""
    from app.engine.host.client import ServiceError

    with service_for(args) as service:
        try:
            result = service.stop_instance(args.id, liquidate=args.liquidate)
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
    print(result.message)
    return EXIT_OK


def _stream_line(stream: dict | None) -> str:
    """The stream as the running kiosk last recorded it: state, reason, since when."""
    if not stream:
        return "not recorded yet (the kiosk has not run with this data folder)"
    line = str(stream.get("state"))
    if stream.get("reason"):
        line += f": {stream['reason']}"
    if stream.get("since"):
        line += f" (since {stream['since']})"
    return line


def cmd_status(args: argparse.Namespace) -> int:
    """Print the status, human-readable or JSON."""
    with service_for(args) as service:
        status = service.status()
    if args.json:
        print(json.dumps(status, indent=None))
        return EXIT_OK
    print(f"mode      {status['mode'].upper()}{'  (HALTED)' if status['halted'] else ''}")
    state = "OPEN" if status["market_open"] else "closed"
    print(f"market    {state}; next open {status['next_open']}, next close {status['next_close']}")
    print(f"stream    {_stream_line(status['stream'])}")
    if status.get("clock_behind"):
        print(f"clock     {status['clock_behind']}")
    cycle = status["last_cycle"]
    print("last cycle " + (f"{cycle['minute']} ({cycle['duration_ms']} ms)" if cycle else "none yet"))
    if status["available_cash"] is not None:
        print(f"cash      {format_money(Decimal(status['broker_cash']))} in the account, "
              f"{format_money(Decimal(status['available_cash']))} available for new cards")
    else:
        print(f"cash      unknown: {status['broker_error']}")
    print(f"day trades {status['day_trading']['summary']}")
    _print_health(status)
    if not status["instances"]:
        print("no running cards")
    for c in status["instances"]:
        price = c["price"] or "waiting for data"
        line = (f"#{c['id']:<4} {c['display_name']:<40} {c['shares']:>6} sh  {c['trade_count']:>4} trades  "
                f"price {price}  value {format_money(Decimal(c['value']))}  "
                f"P&L {format_money(Decimal(c['pnl']), signed=True)} ({format_pct(Decimal(c['pnl_pct']))})")
        if c["faulted"]:
            line += f"  FAULTED: {c['faulted']}"
        print(line)
        if c.get("day_check"):
            print(f"      vs backtest {c['day_check']}")
    return EXIT_OK


# --- storage safety and observability (issue 7) -------------------------------------------------

def _mb(size: int | None) -> str:
    return "unknown" if size is None else f"{size / 1e6:.1f} MB"


def _print_health(status: dict) -> None:
    """Backup, database sizes, free disk, log folder size and today's error count."""
    backup = status.get("last_backup")
    print("backup    " + (f"{backup['file']} at {backup['time']}" if backup else "none yet"))
    dbs = status.get("databases") or {}
    free = status.get("free_disk_bytes")
    print(f"storage   system.db {_mb(dbs.get('system.db'))}, stocks.db {_mb(dbs.get('stocks.db'))}; "
          f"{'unknown' if free is None else f'{free / 1e9:.1f} GB'} free; logs {_mb(status.get('log_bytes'))}")
    errors = status.get("errors_today", 0)
    print(f"errors    {errors} logged today" + ("  (see the logs folder)" if errors else ""))
