"""Benchmark of the backtest replay engine against backtesting.py and backtrader.

One year of synthetic minute bars for one symbol (SimMarket.session_bars for every 2024 XNYS
session: 390 bars a session, 210 on early closes), held in memory. The engine replays the
shipped ``algorithms/sma_crossover.py`` (fast 20, slow 50, all in / all out) through
``replay_bars``; the same long-only SMA 20/50 crossover (buy when flat and the fast average
crosses above the slow one, sell everything on the cross back, market orders filled at the
next bar's open) runs on backtrader and on backtesting.py over the same bars, fed the two
averages as computed by the algorithm's arithmetic (see ``engine_sma``). Fill-bar timestamps
of every entry and exit are compared with the engine's.

Prints progress, then as its last line one JSON object: bars, engine_bars_per_s,
backtesting_py_bars_per_s, backtrader_bars_per_s, signals_match (plus trade counts).
Target: engine >= 200,000 bars/s, above backtesting.py, >= 10x backtrader, signals matching.
The two libraries are the optional ``bench`` extra; without them their figures are null.

    .venv/bin/python bench/bench_backtest.py [--symbol AAPL] [--repeat 3]
"""

from __future__ import annotations

import argparse
import calendar as _calendar
import json
import sys
import time
import warnings
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from app.engine.backtest.replay import BacktestRequest, replay_bars  # noqa: E402
from app.engine.marketdata.calendar import MarketCalendar  # noqa: E402
from app.engine.sim.market import SimMarket  # noqa: E402
from app.storage.records import Bar  # noqa: E402

FAST, SLOW = 20, 50
CAPITAL = 10_000
START, END = date(2024, 1, 1), date(2024, 12, 31)
INSTALL_HINT = "install them with: .venv/bin/pip install backtesting backtrader  (the optional 'bench' extra)"

Signals = list[tuple[str, int]]  # (side, fill bar epoch seconds)


def year_of_bars(symbol: str) -> list[Bar]:
    """Every 2024 session's bars from the simulated market (pure: no store is written)."""
    cal = MarketCalendar()
    sim = SimMarket(cal, None, seed=0)  # type: ignore[arg-type] - session_bars never touches the store
    return [bar for day in cal.sessions_between(START, END) for bar in sim.session_bars(symbol, day)]


def best_of(repeat: int, job):
    """(fastest seconds, last result) of ``repeat`` runs of ``job()``."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = job()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run_engine(symbol: str, bars: list[Bar], repeat: int) -> tuple[float, Signals]:
    request = BacktestRequest("sma_crossover", symbol, START, END, capital=CAPITAL,
                              params={"fast": FAST, "slow": SLOW})
    seconds, result = best_of(repeat, lambda: replay_bars(request, bars))
    return seconds, [(t.side, int(t.timestamp.timestamp())) for t in result.trades]


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
    return [nan] * (n - 1) + [sum(ticks[i - n + 1:i + 1]) / scale for i in range(n - 1, len(closes))]


def frame(bars: list[Bar]):
    """The bars as the OHLCV DataFrame both libraries take (naive UTC index), plus the two averages."""
    import pandas as pd

    closes = [b.close for b in bars]
    index = pd.to_datetime([b.ts for b in bars], unit="s")
    return pd.DataFrame({"Open": [b.open for b in bars], "High": [b.high for b in bars],
                         "Low": [b.low for b in bars], "Close": closes,
                         "Volume": [b.volume for b in bars], "Fast": engine_sma(closes, FAST),
                         "Slow": engine_sma(closes, SLOW)}, index=index)


def run_backtesting_py(df, repeat: int) -> tuple[float, Signals]:
    from backtesting import Backtest, Strategy

    class SmaCross(Strategy):
        def init(self):
            self.fast = self.I(lambda: self.data.Fast, name="fast")
            self.slow = self.I(lambda: self.data.Slow, name="slow")

        def next(self):
            if len(self.data) < SLOW + 1:
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

    seconds, stats = best_of(repeat, job)
    strategy = stats._strategy
    signals: Signals = []
    for trade in list(strategy.closed_trades) + list(strategy.trades):
        signals.append(("buy", _epoch(trade.entry_time)))
        if trade.exit_time is not None:
            signals.append(("sell", _epoch(trade.exit_time)))
    return seconds, sorted(signals, key=lambda s: s[1])


def run_backtrader(df) -> tuple[float, Signals]:
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
            if len(self) < SLOW + 1:
                return
            f0, f1, s0, s1 = self.fast[-1], self.fast[0], self.slow[-1], self.slow[0]
            if not self.position and f0 <= s0 and f1 > s1:
                self.buy(size=int(self.broker.getcash() * 0.98 / self.data.close[0]))
            elif self.position and f0 >= s0 and f1 < s1:
                self.close()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(SmaData(dataname=df))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(CAPITAL)
    t0 = time.perf_counter()
    cerebro.run()
    return time.perf_counter() - t0, fills


def _epoch(moment) -> int:
    """Epoch seconds of a naive-UTC datetime or pandas Timestamp."""
    return _calendar.timegm(moment.timetuple())


def compare(name: str, engine: Signals, other: Signals) -> bool:
    """True when both list the same (side, fill minute) sequence; prints the first difference."""
    if engine == other:
        print(f"  {name}: all {len(other)} entries and exits on the engine's bars", flush=True)
        return True
    first = next((i for i, (a, b) in enumerate(zip(engine, other)) if a != b), min(len(engine), len(other)))
    print(f"  {name}: differs at fill #{first}: engine {engine[first:first + 2]} vs {other[first:first + 2]} "
          f"({len(engine)} vs {len(other)} fills)", flush=True)
    return False


def main(argv: list[str] | None = None) -> int:
    """Run the three backtests and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the engine and backtesting.py (best kept)")
    args = parser.parse_args(argv)

    bars = year_of_bars(args.symbol)
    n = len(bars)
    print(f"{n:,} synthetic minute bars of {args.symbol}, {START} to {END}", flush=True)
    engine_s, engine_signals = run_engine(args.symbol, bars, args.repeat)
    print(f"engine (sma_crossover.py via replay_bars): {engine_s:.3f} s, {n / engine_s:,.0f} bars/s, "
          f"{len(engine_signals)} fills", flush=True)

    report = {"bars": n, "engine_bars_per_s": round(n / engine_s), "backtesting_py_bars_per_s": None,
              "backtrader_bars_per_s": None, "signals_match": None, "engine_fills": len(engine_signals)}
    try:
        import backtesting  # noqa: F401
        import backtrader  # noqa: F401
    except ImportError as exc:
        print(f"comparison skipped: {exc.name} is not installed; {INSTALL_HINT}", file=sys.stderr, flush=True)
        print(json.dumps(report))
        return 0

    df = frame(bars)
    bpy_s, bpy_signals = run_backtesting_py(df, args.repeat)
    print(f"backtesting.py: {bpy_s:.3f} s, {n / bpy_s:,.0f} bars/s", flush=True)
    btr_s, btr_signals = run_backtrader(df)
    print(f"backtrader: {btr_s:.3f} s, {n / btr_s:,.0f} bars/s", flush=True)
    match_bpy = compare("backtesting.py", engine_signals, bpy_signals)
    match_btr = compare("backtrader", engine_signals, btr_signals)
    report.update(backtesting_py_bars_per_s=round(n / bpy_s), backtrader_bars_per_s=round(n / btr_s),
                  signals_match=match_bpy and match_btr)
    print(f"engine is {bpy_s / engine_s:.1f}x backtesting.py and {btr_s / engine_s:.1f}x backtrader", flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
