"""``autotrader backtest ALGORITHM SYMBOL --start D --end D``: replay an algorithm over stored bars."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from app.commands.admin import parse_params
from app.commands.common import EXIT_FAILED, EXIT_OK, CommandError, fail, parse_day, settings_for
from app.engine.portfolio.money import format_money, format_pct, to_decimal

if TYPE_CHECKING:
    from app.engine.backtest.replay import BacktestResult

_BAR_WIDTH = 30
_SHOWN_TRADES = 10


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backtest`` to the parser."""
    p = sub.add_parser("backtest", help="replay an algorithm over stored minute bars")
    p.add_argument("algorithm", help="algorithm type, e.g. sma_crossover (see `autotrader algorithms`)")
    p.add_argument("symbol", help="ticker, e.g. AAPL")
    p.add_argument("--start", required=True, metavar="D", help="first New York day YYYY-MM-DD")
    p.add_argument("--end", required=True, metavar="D", help="last New York day YYYY-MM-DD, inclusive")
    p.add_argument("--capital", default="10000", metavar="USD", help="the card's capital (default 10000)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="algorithm parameter, repeatable")
    p.add_argument("--slippage-bps", default="0", metavar="N",
                   help="fill price moved against the trade by N basis points (default 0)")
    p.add_argument("--trades-csv", metavar="FILE", help="write the trades as timestamp,side,shares,price")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--require-complete", action="store_true",
                   help="refuse when a session of the range has no complete real data (default: run on "
                        "what exists and say which sessions were missing)")
    p.add_argument("--sim", action="store_true", help="use the simulated market's bars")
    p.set_defaults(func=cmd_backtest)


class ProgressBar:
    """A redrawn bar on a terminal (stderr); silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._out = stream
        self._on = stream.isatty()
        self._label = label
        self._shown = -1

    def __call__(self, fraction: float) -> None:
        if not self._on:
            return
        pct = int(max(0.0, min(1.0, fraction)) * 100)
        if pct == self._shown:
            return
        self._shown = pct
        filled = _BAR_WIDTH * pct // 100
        self._out.write(f"\r{self._label} [{'#' * filled}{'-' * (_BAR_WIDTH - filled)}] {pct:3d}%")
        if pct >= 100:
            self._out.write("\n")
        self._out.flush()

    def abandon(self) -> None:
        """End the bar's line so an error message starts on a fresh one."""
        if self._on and 0 <= self._shown < 100:
            self._out.write("\n")
            self._out.flush()


def _capital(text: str) -> Decimal:
    try:
        value = to_decimal(text, "--capital")
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if value <= 0:
        raise CommandError(f"--capital must be positive, got {text}")
    return value


def _slippage(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CommandError(f"--slippage-bps {text!r} is not a number") from None


def _csv_target(name: str | None) -> Path | None:
    if name is None:
        return None
    path = Path(name)
    if not path.parent.is_dir():
        raise CommandError(f"cannot write {name}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise CommandError(f"cannot write {name}: it is a folder")
    return path


def write_trades_csv(path: Path, result: BacktestResult) -> None:
    """``timestamp,side,shares,price`` with UTC ``Z`` timestamps, one row per fill."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "side", "shares", "price"])
        for trade in result.trades:
            writer.writerow([f"{trade.timestamp:%Y-%m-%dT%H:%M:%SZ}", trade.side, trade.shares, str(trade.price)])


def data_lines(result: BacktestResult) -> list[str]:
    """What the replay ran on, and the sessions it lacked."""
    data = result.data
    if data is None:
        return []
    lines = [f"  data          {data.text}"]
    if data.missing_sessions:
        lines.append(f"  missing       {data.missing_text} (import them, or set Alpaca keys to fetch them; "
                     "--require-complete refuses such a run)")
    return lines


def summary_lines(result: BacktestResult) -> list[str]:
    """The readable report."""
    params = " ".join(f"{k}={v}" for k, v in result.params.items()) or "none"
    lines = [
        f"{result.algorithm_type} ({result.algorithm_name}) on {result.symbol}, {result.start} to {result.end}",
        f"  capital {format_money(result.capital)}, parameters {params}, slippage {result.slippage_bps:g} bps",
        *data_lines(result),
        f"  {result.minutes:,} minutes, {result.bars:,} bars replayed in {result.elapsed_s:.2f} s",
        f"  final value   {format_money(result.final_value)} ({result.final_shares:,} shares + "
        f"{format_money(result.uninvested)} cash)",
        f"  P&L           {format_money(result.pnl, signed=True)} ({format_pct(result.pnl_pct)})",
        f"  buy and hold  {format_money(result.buy_and_hold_pnl, signed=True)} "
        f"({format_pct(result.buy_and_hold_pnl_pct)})",
        f"  max drawdown  {format_money(-Decimal(str(round(result.max_drawdown, 2))))} "
        f"({result.max_drawdown_pct:.2f}%)",
        f"  trades {len(result.trades):,}, round trips {result.round_trips:,}, win rate "
        + ("n/a" if result.win_rate is None else f"{result.win_rate:.1f}%")
        + f", exposure {result.exposure_pct:.1f}%",
    ]
    if result.refused_orders:
        first = result.refusals[0]
        lines.append(f"  refused orders {result.refused_orders:,} (first at {first.decided_at:%Y-%m-%d %H:%M}Z: "
                     f"{first.reason})")
    if result.unfilled_order:
        lines.append(f"  note: {result.unfilled_order}")
    if result.trades:
        shown = result.trades[-_SHOWN_TRADES:]
        more = len(result.trades) - len(shown)
        lines.append("  last trades:" if more else "  trades:")
        for t in shown:
            lines.append(f"    {t.timestamp:%Y-%m-%dT%H:%M:%SZ} {t.side:<4} {t.shares:>7,} @ {t.price:.4f} "
                         f"= {format_money(t.value)}")
        if more:
            lines.append(f"    … and {more:,} earlier (--trades-csv FILE writes them all)")
    return lines


def cmd_backtest(args: argparse.Namespace) -> int:
    """Validate everything, replay, then print the summary or JSON and write the CSV."""
    from app.engine.backtest.isolated import run_isolated, run_isolated_json
    from app.engine.backtest.replay import BacktestError, BacktestRequest, BacktestRunError

    start, end = parse_day(args.start, "--start"), parse_day(args.end, "--end")
    params = parse_params(args.param)
    csv_path = _csv_target(args.trades_csv)
    try:
        request = BacktestRequest(args.algorithm, args.symbol.strip().upper(), start, end,
                                  capital=_capital(args.capital), params=params,
                                  slippage_bps=_slippage(args.slippage_bps),
                                  require_complete=args.require_complete)
    except BacktestError as exc:
        raise CommandError(str(exc)) from None
    settings = settings_for(args)
    bar = ProgressBar(sys.stderr, f"{request.algorithm_type} {request.symbol}")
    try:
        # In a worker process like the kiosk's jobs: the algorithm file never runs in this one.
        # Forked from here: this command runs no thread, and its worker needs no fresh interpreter.
        fork_here = threading.active_count() == 1
        if args.json and csv_path is None:  # the worker writes the JSON: no result to send and render
            text = run_isolated_json(request, bar, None, settings=settings, now=None, fork_here=fork_here)
        else:
            result = run_isolated(request, bar, None, settings=settings, now=None, fork_here=fork_here)
    except BacktestRunError as exc:
        bar.abandon()
        return fail(str(exc), EXIT_FAILED)
    except BacktestError as exc:
        bar.abandon()
        raise CommandError(str(exc)) from None
    if args.json and csv_path is None:
        print(text)
        return EXIT_OK
    if csv_path is not None:
        try:
            write_trades_csv(csv_path, result)
        except OSError as exc:
            return fail(f"cannot write {csv_path}: {exc.strerror}", EXIT_FAILED)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print("\n".join(summary_lines(result)))
    return EXIT_OK
