"""Benchmark of backtests end to end: the ``autotrader backtest`` command, the replay, backtesting.py,
backtrader and a plain-loop floor, on the same minute bars of one symbol, in one run.

Data: ``--years`` full years (default 5, ending 2024-12-31) of the simulated market's session bars
for one symbol (390 bars a session, 210 on early closes; marked synthetic), written into stocks.db
of a temporary data folder (sim mode) before anything is timed, with the replay's warm-up sessions.
Each figure is the best of ``--repeat`` runs (default 3), in bars of the range per second; the
runs go in rounds (one of each per round), so that every contender meets a shared machine's load
alike, and each one's CPU time is kept too (``*_cpu`` ratios: steadier than wall-clock there):

- ``cli_bars_per_s``: ``python -m app backtest sma_crossover SYMBOL --start --end --sim --json`` as a
  person runs it, from process start to its JSON (its worker process, the calendar, loading the bars
  from stocks.db, the replay, the results);
- ``replay_bars_per_s``: ``replay_bars`` over the same stored bars, already in memory;
- ``backtesting_py_bars_per_s`` / ``backtrader_bars_per_s``: the same long-only SMA 20/50 crossover
  (buy when flat and the fast average crosses above the slow one, sell everything on the cross back,
  market orders filled at the next bar's open, no decision before the range starts), fed the two
  averages as the algorithm computes them (see ``engine_sma``, precomputed outside the timing);
- ``floor_bars_per_s``: a plain Python loop of the same arithmetic with running integer sums: what
  one decision a minute costs at the least in Python.

``signals_match`` is true when all of them list the same entries and exits (side, fill minute).
The last line is one JSON object with those figures and the ratios to backtesting.py
(``cli_over_backtesting_py``, ``replay_over_backtesting_py``; targets: cli >= 2x, replay >= 2.5x).
The two libraries are the optional ``bench`` extra; without them their figures and the ratios
are null. Five years take a few minutes, most of it backtrader's (``--backtrader-repeat 1`` for a
quicker look, 0 to leave it out); ``--years 1`` is a quick run.

    .venv/bin/python bench/bench_backtest.py [--years 5] [--symbol AAPL] [--repeat 3]
"""

from __future__ import annotations

import argparse
import calendar as _calendar
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

from app.engine.backtest.replay import (  # noqa: E402
    DEFAULT_WARMUP_SESSIONS, SIM_SEED, BacktestRequest, replay_bars,
)
from app.engine.marketdata.calendar import MarketCalendar  # noqa: E402
from app.engine.sim.market import SimMarket  # noqa: E402
from app.engine.system.data_folder import DataPaths, open_market_store  # noqa: E402
from app.storage.records import Bar  # noqa: E402
from app.storage.timefmt import to_epoch  # noqa: E402

ALGORITHM = "sma_crossover"
FAST, SLOW = 20, 50
CAPITAL = 10_000
LAST_DAY = date(2024, 12, 31)
INSTALL_HINT = "install them with: .venv/bin/pip install backtesting backtrader  (the optional 'bench' extra)"

Signals = list[tuple[str, int]]  # (side, fill bar epoch seconds)


@dataclass
class Contender:
    """One way to run the backtest: ``job()`` runs it once, ``signals(result)`` lists its fills.

    ``wall``/``cpu`` are the fastest of its runs; ``cpu`` counts this process's CPU time, or that of
    the child processes for a command (``in_children``). On a shared machine the CPU figures move
    less than the wall-clock ones; the required figures are wall-clock.
    """

    name: str
    job: Callable[[], Any]
    signals: Callable[[Any], Signals]
    in_children: bool = False
    wall: float = float("inf")
    cpu: float = float("inf")
    result: Any = None

    def run_once(self) -> None:
        cpu0 = _children_cpu() if self.in_children else time.process_time()
        t0 = time.perf_counter()
        self.result = self.job()
        self.wall = min(self.wall, time.perf_counter() - t0)
        cpu1 = _children_cpu() if self.in_children else time.process_time()
        self.cpu = min(self.cpu, cpu1 - cpu0)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- data ------------------------------------------------------------------------------------


def store_bars(folder: Path, symbol: str, start: date, end: date) -> tuple[list[Bar], int]:
    """Write the sim market's bars of the range and its warm-up into ``folder``'s sim stocks.db, as
    the backtest itself would; return every stored bar (oldest first) and the index of the range's first."""
    cal = MarketCalendar()
    sessions = cal.sessions_between(start, end)
    first = sessions[0]
    for _ in range(DEFAULT_WARMUP_SESSIONS):
        first = cal.previous_session(first)
    wanted = cal.sessions_between(first, end)
    paths = DataPaths.for_folder(folder / "sim")
    paths.create()
    with open_market_store(paths, cal) as store:
        SimMarket(cal, store, seed=SIM_SEED).ensure_history(symbol, len(wanted), before=cal.session_close(end))
        bars = store.bars_between(symbol, to_epoch(cal.session_open(first)), to_epoch(cal.session_close(end)) - 1)
    range_lo = next(i for i, b in enumerate(bars) if b.ts >= to_epoch(cal.session_open(sessions[0])))
    return bars, range_lo


# --- the engine --------------------------------------------------------------------------------


def cli_contender(folder: Path, symbol: str, start: date, end: date) -> Contender:
    """The command as a person runs it; the JSON it prints is its result."""
    env = {**os.environ, "AUTOTRADER_DATA_DIR": str(folder)}
    env.pop("AUTOTRADER_MODE", None)
    command = [sys.executable, "-m", "app", "backtest", ALGORITHM, symbol, "--start", start.isoformat(),
               "--end", end.isoformat(), "--sim", "--json", "--param", f"fast={FAST}", "--param", f"slow={SLOW}",
               "--capital", str(CAPITAL)]

    def job() -> dict:
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"the backtest command failed ({done.returncode}): {done.stderr.strip()}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["data"]["missing_sessions"] or not result["data"]["simulated"]:
            raise SystemExit(f"the command did not run on the stored bars: {result['data']['text']}")
        return result

    def signals(result: dict) -> Signals:
        return [(t["side"], _calendar.timegm(time.strptime(t["timestamp"], "%Y-%m-%dT%H:%M:%SZ")))
                for t in result["trades"]]

    return Contender("autotrader backtest (command, end to end)", job, signals, in_children=True)


def replay_contender(symbol: str, bars: list[Bar], start: date, end: date) -> Contender:
    request = BacktestRequest(ALGORITHM, symbol, start, end, capital=CAPITAL, params={"fast": FAST, "slow": SLOW})
    return Contender(f"replay ({ALGORITHM}.py via replay_bars)", lambda: replay_bars(request, bars),
                     lambda result: [(t.side, int(t.timestamp.timestamp())) for t in result.trades])


# --- the floor ---------------------------------------------------------------------------------


def floor_contender(bars: list[Bar], range_lo: int) -> Contender:
    """The algorithm's decisions in one plain loop: running integer sums of closes in hundredths of a
    cent, the same cross rule, filled at the next bar's open."""
    closes = [b.close for b in bars]
    stamps = [b.ts for b in bars]

    def job() -> Signals:
        ticks = [round(c * 10_000) for c in closes]
        fills: Signals = []
        fast_sum = slow_sum = 0
        prev_fast = prev_slow = None
        held = False
        first = max(SLOW, range_lo - 1)  # decide after bar i closes, i >= 50 bars of history
        for i in range(len(ticks) - 1):
            fast_sum += ticks[i]
            slow_sum += ticks[i]
            if i >= FAST:
                fast_sum -= ticks[i - FAST]
            if i >= SLOW:
                slow_sum -= ticks[i - SLOW]
            if i < SLOW - 1:
                continue
            now_fast, now_slow = fast_sum * SLOW, slow_sum * FAST
            if i >= first and prev_fast is not None:
                if not held and now_fast > now_slow and prev_fast <= prev_slow:
                    fills.append(("buy", stamps[i + 1]))
                    held = True
                elif held and now_fast < now_slow and prev_fast >= prev_slow:
                    fills.append(("sell", stamps[i + 1]))
                    held = False
            prev_fast, prev_slow = now_fast, now_slow
        return fills

    return Contender("plain-loop floor", job, lambda fills: fills)


# --- the libraries -----------------------------------------------------------------------------


def engine_sma(closes: list[float], n: int) -> list[float]:
    """The average after each bar as sma_crossover.py decides with it: exact, from integer sums.

    The algorithm sums closes in whole hundredths of a cent, so a tie of the two averages is an
    exact tie. One correctly rounded division of those integers keeps that: equal averages give
    equal floats and unequal ones stay ordered, so a library comparing these floats crosses
    exactly where the algorithm does. Precomputed outside the timed runs, this only makes them faster.
    """
    nan = float("nan")
    ticks = [round(c * 10_000) for c in closes]
    scale = n * 10_000
    out = [nan] * (n - 1)
    window = sum(ticks[:n - 1])
    for i in range(n - 1, len(ticks)):
        window += ticks[i]
        out.append(window / scale)
        window -= ticks[i - n + 1]
    return out


def frame(bars: list[Bar]):
    """The bars as the OHLCV DataFrame both libraries take (naive UTC index), plus the two averages."""
    import pandas as pd

    closes = [b.close for b in bars]
    index = pd.to_datetime([b.ts for b in bars], unit="s")
    return pd.DataFrame({"Open": [b.open for b in bars], "High": [b.high for b in bars],
                         "Low": [b.low for b in bars], "Close": closes,
                         "Volume": [b.volume for b in bars], "Fast": engine_sma(closes, FAST),
                         "Slow": engine_sma(closes, SLOW)}, index=index)


def backtesting_py_contender(df, first: int) -> Contender:
    """``first``: the number of bars that must have closed before the first decision."""
    from backtesting import Backtest, Strategy

    class SmaCross(Strategy):
        def init(self):
            self.fast = self.I(lambda: self.data.Fast, name="fast")
            self.slow = self.I(lambda: self.data.Slow, name="slow")

        def next(self):
            if len(self.data) < first:
                return
            f0, f1, s0, s1 = self.fast[-2], self.fast[-1], self.slow[-2], self.slow[-1]
            # The engine's rule: before <= and now >, not the library's strict crossover().
            if not self.position and f0 <= s0 and f1 > s1:
                self.buy()
            elif self.position and f0 >= s0 and f1 < s1:
                self.position.close()

    def job():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Backtest(df, SmaCross, cash=CAPITAL * 1000, commission=0.0, trade_on_close=False).run()

    def signals(stats) -> Signals:
        strategy = stats._strategy
        fills: Signals = []
        for trade in list(strategy.closed_trades) + list(strategy.trades):
            fills.append(("buy", _epoch(trade.entry_time)))
            if trade.exit_time is not None:
                fills.append(("sell", _epoch(trade.exit_time)))
        return sorted(fills, key=lambda s: s[1])

    return Contender("backtesting.py", job, signals)


def backtrader_contender(df, first: int) -> Contender:
    import backtrader as bt

    fills: Signals = []

    class SmaData(bt.feeds.PandasData):
        lines = ("fast", "slow")
        params = (("fast", "Fast"), ("slow", "Slow"))

    class SmaCross(bt.Strategy):
        def __init__(self):
            self.fast = self.data.fast
            self.slow = self.data.slow

        def notify_order(self, order):
            if order.status == order.Completed:
                fills.append(("buy" if order.isbuy() else "sell", _epoch(bt.num2date(order.executed.dt))))

        def next(self):
            if len(self) < first:
                return
            f0, f1, s0, s1 = self.fast[-1], self.fast[0], self.slow[-1], self.slow[0]
            if not self.position and f0 <= s0 and f1 > s1:
                self.buy(size=int(self.broker.getcash() * 0.98 / self.data.close[0]))
            elif self.position and f0 >= s0 and f1 < s1:
                self.close()

    def job() -> Signals:
        fills.clear()
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(SmaData(dataname=df))
        cerebro.addstrategy(SmaCross)
        cerebro.broker.setcash(CAPITAL)
        cerebro.run()
        return list(fills)

    return Contender("backtrader", job, lambda result: result)


def _epoch(moment) -> int:
    """Epoch seconds of a naive-UTC datetime or pandas Timestamp."""
    return _calendar.timegm(moment.timetuple())


def compare(name: str, engine: Signals, other: Signals) -> bool:
    """True when both list the same (side, fill minute) sequence; prints the first difference."""
    if engine == other:
        print(f"  {name}: all {len(other)} entries and exits on the replay's bars", flush=True)
        return True
    first = next((i for i, (a, b) in enumerate(zip(engine, other)) if a != b), min(len(engine), len(other)))
    print(f"  {name}: differs at fill #{first}: replay {engine[first:first + 2]} vs {other[first:first + 2]} "
          f"({len(engine)} vs {len(other)} fills)", flush=True)
    return False


def main(argv: list[str] | None = None) -> int:
    """Store the bars, run every backtest, print the figures and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--years", type=int, default=5, help="full years ending 2024-12-31 (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (best kept; default 3)")
    parser.add_argument("--backtrader-repeat", type=int, default=None,
                        help="runs of backtrader (default --repeat; 0 skips it: its figure is then null)")
    args = parser.parse_args(argv)
    if not 1 <= args.years <= 9:
        parser.error("--years must be 1 to 9 (the calendar starts in 2015)")
    start, end = date(LAST_DAY.year - args.years + 1, 1, 1), LAST_DAY

    try:
        import backtesting  # noqa: F401
        import backtrader  # noqa: F401
        libraries = True
    except ImportError as exc:
        print(f"comparison skipped: {exc.name} is not installed; {INSTALL_HINT}", file=sys.stderr, flush=True)
        libraries = False
    btr_repeat = args.repeat if args.backtrader_repeat is None else args.backtrader_repeat

    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        bars, range_lo = store_bars(folder, args.symbol, start, end)
        n = len(bars) - range_lo
        print(f"{n:,} synthetic minute bars of {args.symbol}, {start} to {end} (+{range_lo} warm-up), stored in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        cli = cli_contender(folder, args.symbol, start, end)
        cli.job()  # a first run caches what any first run on a machine would (bytecode, the calendar's table)
        replay = replay_contender(args.symbol, bars, start, end)
        floor = floor_contender(bars, range_lo)
        contenders = [cli, replay, floor]
        bpy = btr = None
        if libraries:
            df = frame(bars)
            first = max(SLOW + 1, range_lo)  # bars closed before the replay's first decision
            bpy = backtesting_py_contender(df, first)
            btr = backtrader_contender(df, first)
            contenders.append(bpy)
        # Rounds of one run each, so that every contender meets the machine's load alike.
        for round_no in range(max(args.repeat, btr_repeat)):
            for contender in contenders + ([btr] if btr is not None and round_no < btr_repeat else []):
                if round_no < args.repeat or contender is btr:
                    contender.run_once()
    ran = [c for c in contenders + [btr] if c is not None and c.result is not None]
    for c in ran:
        print(f"{c.name}: {c.wall:.3f} s ({n / c.wall:,.0f} bars/s), CPU {c.cpu:.3f} s", flush=True)
    reference = replay.signals(replay.result)
    print(f"{len(reference)} fills by the replay", flush=True)
    matches = [compare(c.name, reference, c.signals(c.result)) for c in ran if c is not replay]

    def per_s(c: Contender | None) -> int | None:
        return None if c is None or c.result is None else round(n / c.wall)

    def ratio(c: Contender, attr: str) -> float | None:
        if bpy is None or bpy.result is None:
            return None
        return round(getattr(bpy, attr) / getattr(c, attr), 2)

    report: dict = {
        "bars": n, "years": args.years, "cli_bars_per_s": per_s(cli), "replay_bars_per_s": per_s(replay),
        "backtesting_py_bars_per_s": per_s(bpy), "backtrader_bars_per_s": per_s(btr),
        "floor_bars_per_s": per_s(floor), "signals_match": all(matches), "fills": len(reference),
        "cli_over_backtesting_py": ratio(cli, "wall"), "replay_over_backtesting_py": ratio(replay, "wall"),
        "cli_over_backtesting_py_cpu": ratio(cli, "cpu"), "replay_over_backtesting_py_cpu": ratio(replay, "cpu"),
    }
    if bpy is not None:
        print(f"command {report['cli_over_backtesting_py']}x and replay {report['replay_over_backtesting_py']}x "
              f"backtesting.py (by CPU time {report['cli_over_backtesting_py_cpu']}x and "
              f"{report['replay_over_backtesting_py_cpu']}x); the replay takes {replay.wall / floor.wall:.1f}x "
              "the floor's time", flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
