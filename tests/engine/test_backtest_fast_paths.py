"""The replay's fast paths answer exactly what the live wrapper and the base methods answer.

The replay calls ``run`` without the live wrapper, serves ``bars_before``/``closes_before`` from its
own lists, pauses the garbage collector and pickles its results as field tuples: each test here
pins one of them to the slow path it replaces.
"""

from __future__ import annotations

import gc
import pickle
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import pytest

import app.engine.backtest.isolated  # noqa: F401 - registers how requests and results travel
from app.engine.algorithm_api import AlgorithmBase, unwrapped_run
from app.engine.backtest.replay import BacktestRequest, BacktestRunError, MemoryBars, replay_bars, run_backtest
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.plugins.loader import load_algorithm_class
from app.engine.sim.market import SimMarket
from app.engine.system.settings import Settings
from app.storage.market_store import MarketStore
from app.storage.records import Bar
from app.storage.timefmt import to_epoch

CAL = MarketCalendar()
FIRST, LAST = date(2024, 6, 4), date(2024, 6, 6)  # three full sessions
ROOT = Path(__file__).resolve().parents[2]

# Every minute: the served answers equal the base methods' (which go through the context and the
# run's time), at the run's own time and at an earlier one, for short, long and oversized windows;
# the fills it sees match the position the book serves. Buys and sells a share on alternate
# minutes, so its transactions change all the time.
PROBE = '''
from datetime import timedelta

from app.engine.algorithm_api import AlgorithmBase, to_epoch


class Algorithm(AlgorithmBase):
    name = "Probe"
    description = "Checks the framework's answers every minute."
    runs = 0

    def run(self, current_time, algo_id):
        type(self).runs += 1
        now = to_epoch(current_time)
        for n in (1, 7, 51, 10 ** 6):
            base = AlgorithmBase.bars_before(self, n)
            if self.bars_before(n) != base:
                raise AssertionError(f"bars_before({n}) differs at {now}")
            if self.closes_before(n) != [b.close for b in base] or \\
                    AlgorithmBase.closes_before(self, n) != [b.close for b in base]:
                raise AssertionError(f"closes_before({n}) differs at {now}")
            if base and (base[-1].ts >= now or (n < 10 ** 6 and len(base) != n)):
                raise AssertionError(f"bars_before({n}) at {now} ends at {base[-1].ts} with {len(base)}")
        earlier = current_time - timedelta(minutes=3)
        if self.closes_before(4, earlier) != [b.close for b in AlgorithmBase.bars_before(self, 4, earlier)]:
            raise AssertionError(f"closes_before(4, earlier) differs at {now}")
        if any(b.ts >= now - 180 for b in self.bars_before(4, earlier)):
            raise AssertionError(f"an earlier time was not honoured at {now}")
        signed = sum(t.shares if t.type == "buy" else -t.shares for t in self.transactions())
        held = self.position()
        if signed != held:
            raise AssertionError(f"transactions say {signed} shares, position {held} at {now}")
        return ("sell", held) if held else ("buy", 1)
'''

# Makes a reference cycle every minute (only the collector frees it) and checks, every minute, that
# the collector is off and that fewer than a session and a half of those cycles are alive.
CYCLES = '''
import gc
import weakref

from app.engine.algorithm_api import AlgorithmBase


class Node:
    pass


class Algorithm(AlgorithmBase):
    name = "Cycles"
    description = "Leaves a reference cycle behind every minute."
    refs = []
    most_alive = 0

    def run(self, current_time, algo_id):
        if gc.isenabled():
            raise AssertionError("the collector runs during the replay")
        node = Node()
        node.me = node
        cls = type(self)
        cls.refs.append(weakref.ref(node))
        if len(cls.refs) % 50 == 0:
            cls.most_alive = max(cls.most_alive, sum(ref() is not None for ref in cls.refs))
        return ("hold", 0)
'''


def sim_bars(symbol: str, first: date, last: date) -> list[Bar]:
    sim = SimMarket(CAL, None, seed=0)  # type: ignore[arg-type] - session_bars never touches the store
    return [b for day in CAL.sessions_between(first, last) for b in sim.session_bars(symbol, day)]


def write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    return folder


def test_served_bars_closes_and_fills_equal_the_base_methods_every_minute(tmp_path: Path) -> None:
    algos = write(tmp_path / "algos", "probe", PROBE)
    probe = load_algorithm_class("probe", [algos])
    probe.runs = 0
    bars = sim_bars("AAPL", date(2024, 6, 3), LAST)  # one warm-up session
    result = replay_bars(BacktestRequest("probe", "AAPL", FIRST, LAST), bars, algorithm_dirs=[algos])
    assert probe.runs == result.minutes == 3 * 390
    assert len(result.trades) > 500  # a fill on alternate minutes: the checks saw a moving book


def test_bars_given_as_columns_are_loaded_whole_once_and_only_when_asked_for() -> None:
    bars = sim_bars("AAPL", FIRST, FIRST)
    loads: list[int] = []

    def load() -> list[Bar]:
        loads.append(1)
        return list(bars)

    ctx = MemoryBars.of_columns("AAPL", [b.ts for b in bars], [b.open for b in bars], [b.close for b in bars], load)
    ctx.now, ctx.visible = bars[10].ts, 10
    assert (ctx.stamps, ctx.opens, ctx.closes) == ([b.ts for b in bars], [b.open for b in bars],
                                                   [b.close for b in bars]) and loads == []
    assert ctx.last_bars("AAPL", 3, 2 ** 40) == bars[7:10] and ctx.bars_between("AAPL", 0, 2 ** 40) == bars[:10]
    assert ctx.bars == bars and loads == [1]
    changed = MemoryBars.of_columns("AAPL", ctx.stamps, ctx.opens, ctx.closes, lambda: bars[1:])
    with pytest.raises(BacktestRunError, match="changed while the backtest read them"):
        changed.bars  # noqa: B018 - the property loads


def test_a_backtest_of_stored_bars_equals_the_replay_of_the_same_bars_in_memory(tmp_path: Path) -> None:
    """run_backtest reads columns and loads whole bars only for an algorithm that asks (the probe
    does, every minute); both give what the replay of the bars in memory gives."""
    algos = write(tmp_path / "algos", "probe", PROBE)
    for algorithm, params, dirs in (("probe", {}, [algos]), ("sma_crossover", {"fast": 3, "slow": 8}, None)):
        settings = Settings(data_root=tmp_path / "data", sim_forced=True, algorithm_dirs=tuple(dirs or ()))
        request = BacktestRequest(algorithm, "AAPL", FIRST, LAST, params=params, warmup_sessions=1)
        stored = run_backtest(request, settings=settings)
        with MarketStore(tmp_path / "data" / "sim" / "stocks.db") as store:
            bars = store.bars_between("AAPL", 0, 2 ** 40)
        assert bars == sim_bars("AAPL", date(2024, 6, 3), LAST)
        in_memory = replay_bars(request, bars, algorithm_dirs=dirs)
        assert stored.trades and stored.trades == in_memory.trades
        assert stored.equity_curve == in_memory.equity_curve and stored.final_value == in_memory.final_value


def test_closes_before_outside_a_backtest_is_the_closes_of_bars_before(tmp_path: Path) -> None:
    algos = write(tmp_path / "algos", "probe", PROBE)
    algo = load_algorithm_class("probe", [algos])("AAPL", 10_000)
    bars = sim_bars("AAPL", FIRST, FIRST)
    ctx = MemoryBars("AAPL", bars)
    algo.bind(ctx)
    at = datetime.fromtimestamp(bars[100].ts, timezone.utc)
    ctx.now, ctx.visible = bars[100].ts, 100
    assert algo.run(at, 1) == ("buy", 1)  # through the live wrapper: the probe's checks pass
    assert algo.closes_before(3) == [b.close for b in bars[97:100]]
    assert algo.closes_before(3, at - timedelta(minutes=10)) == [b.close for b in bars[87:90]]
    assert algo.closes_before(0) == []


def test_unwrapped_run_is_the_algorithms_own_method(tmp_path: Path) -> None:
    algos = write(tmp_path / "algos", "probe", PROBE)
    cls = load_algorithm_class("probe", [algos])
    algo = cls("AAPL", 10_000)
    inner = unwrapped_run(algo)
    assert inner is cls.run.__wrapped__ and inner is not cls.run

    class Unwrapped(AlgorithmBase):  # a run put on the class after creation is not wrapped
        name = description = "x"

        def run(self, current_time, algo_id):  # type: ignore[override]
            return ("hold", 0)

    Unwrapped.run = lambda self, current_time, algo_id: ("buy", algo_id)  # type: ignore[method-assign]
    assert unwrapped_run(Unwrapped("AAPL", 1))(Unwrapped("AAPL", 1), datetime.now(timezone.utc), 5) == ("buy", 5)


def test_the_collector_is_off_during_a_replay_frees_cycles_each_session_and_comes_back(tmp_path: Path) -> None:
    algos = write(tmp_path / "algos", "cycles", CYCLES)
    cycles = load_algorithm_class("cycles", [algos])
    cycles.refs.clear()
    cycles.most_alive = 0
    bars = sim_bars("AAPL", FIRST, LAST)
    assert gc.isenabled()
    replay_bars(BacktestRequest("cycles", "AAPL", FIRST, LAST), bars, algorithm_dirs=[algos])
    assert gc.isenabled()
    assert len(cycles.refs) == 3 * 390
    # Without a collection each session all 1170 cycles would be alive by the end.
    assert 300 <= cycles.most_alive <= 390 + 50
    gc.collect()
    assert all(ref() is None for ref in cycles.refs)


def test_the_collector_comes_back_after_a_failing_replay_and_stays_off_if_it_was(tmp_path: Path) -> None:
    algos = write(tmp_path / "algos", "fails", '''
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = description = "fails"

    def run(self, current_time, algo_id):
        raise ValueError("no")
''')
    bars = sim_bars("AAPL", FIRST, FIRST)
    with pytest.raises(BacktestRunError, match="ValueError: no"):
        replay_bars(BacktestRequest("fails", "AAPL", FIRST, FIRST), bars, algorithm_dirs=[algos])
    assert gc.isenabled()
    gc.disable()
    try:
        replay_bars(BacktestRequest("sma_crossover", "AAPL", FIRST, FIRST), bars)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_results_pickle_to_equal_results() -> None:
    bars = sim_bars("AAPL", date(2024, 6, 3), LAST)
    result = replay_bars(BacktestRequest("sma_crossover", "AAPL", FIRST, LAST, capital=Decimal(5000),
                                         params={"fast": 3, "slow": 8}), bars)
    assert result.trades and result.equity_curve and result.refusals == ()
    again = pickle.loads(ForkingPickler.dumps(result))  # as a worker sends it (isolated registers mappingproxy)
    assert again.trades == result.trades and again.equity_curve == result.equity_curve
    assert again.to_json() == result.to_json()


def test_the_command_line_starts_without_qt_or_the_engine_wiring() -> None:
    code = ("import sys, app.cli; bad = [m for m in ('PySide6', 'app.engine.host.wiring', 'numpy', 'pandas') "
            "if m in sys.modules]; print(','.join(bad))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.strip() == ""


def test_bars_before_served_by_the_replay_is_a_fresh_list(tmp_path: Path) -> None:
    bars = sim_bars("AAPL", FIRST, FIRST)
    algos = write(tmp_path / "algos", "mutates", '''
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = description = "mutates"

    def run(self, current_time, algo_id):
        self.closes_before(5).clear()
        self.bars_before(5).clear()
        if len(self.closes_before(5)) != min(5, len(self.bars_before(10 ** 6))):
            raise AssertionError("a served list was the replay's own")
        return ("hold", 0)
''')
    result = replay_bars(BacktestRequest("mutates", "AAPL", FIRST, FIRST), bars, algorithm_dirs=[algos])
    assert result.minutes == 390
    assert to_epoch(result.equity_curve[-1].timestamp) == to_epoch(CAL.session_close(FIRST))


def _equity_case(changes_of, opening):
    """_equity over three sessions of bars with IEX-style gaps, and the plain per-point rule."""
    from app.engine.backtest.replay import _equity, _picks, _visible

    days = CAL.sessions_between(FIRST, LAST)
    per_session = [range(to_epoch(CAL.session_open(d)), to_epoch(CAL.session_close(d)), 60) for d in days]
    bars = [b for b in sim_bars("AAPL", date(2024, 6, 3), LAST) if b.ts % 420 != 0]
    stamps, closes = [b.ts for b in bars], [b.close for b in bars]
    seen = [_visible(stamps, minutes) for minutes in per_session]
    assert any(isinstance(s, list) for s in seen) and all(s == [sum(t < m for t in stamps) for m in minutes]
                                                          for s, minutes in zip(seen, per_session))
    minutes = [m for r in per_session for m in r]
    end = to_epoch(CAL.session_close(LAST))
    changes = changes_of(minutes, end)
    curve = _equity(per_session, seen, closes, 10_000.0, changes, end, 50, (25, 101.5, 390), opening)
    flat = [v for s in seen for v in s] + [len(closes)]
    state, values, held = opening, [], []
    for i, ts in enumerate(minutes + [end]):
        for change in changes:
            if change[0] == ts:
                state = change[1:]
        mark = closes[flat[i] - 1] if flat[i] else 0.0
        values.append(state[0] * mark + state[1])
        held.append(state[0])
    peak, falls, ratios = -1e300, [], []
    for value in values:
        peak = max(peak, value)
        falls.append(peak - value)
        ratios.append((peak - value) / peak if peak > 0 else 0.0)
    picks = list(_picks(len(values), 50))
    assert [p.value for p in curve.points] == [values[i] for i in picks]
    assert [p.shares for p in curve.points] == [held[i] for i in picks]
    assert (curve.max_drawdown, curve.max_drawdown_pct) == (max(falls), max(ratios) * 100)
    assert curve.exposure_pct == sum(1 for h in held[:-1] if h) / len(minutes) * 100
    assert [v for _, v in curve.benchmark] == [
        10_000.0 + 25 * (closes[flat[i] - 1] - 101.5) if flat[i] > 390 else 10_000.0 for i in picks]


def test_the_equity_stretches_give_the_values_of_one_point_at_a_time() -> None:
    """_equity works stretch by stretch between fills, passing over those that cannot set a new
    worst fall; here against the plain per-point rule (value = shares * last close + cash, running
    peak, fall, fall / peak)."""
    _equity_case(lambda minutes, end: [
        (minutes[10], 30, 7000.0), (minutes[10], 40, 6000.5), (minutes[400], 0, 10_100.25),
        (minutes[401], 12, 9000.0), (end, 0, 9500.0)], (5, 9500.0))  # two fills in one minute, one at the end


def test_the_equity_of_many_random_fills_is_the_per_point_one() -> None:
    import random

    rng = random.Random(12)

    def changes(minutes: list[int], end: int) -> list[tuple[int, int, float]]:
        at = sorted(rng.sample(range(len(minutes)), 300))
        return [(minutes[i], rng.choice((0, 0, rng.randint(1, 90))), rng.uniform(1000, 12_000)) for i in at]

    for _ in range(3):
        _equity_case(changes, (0, 10_000.0))
