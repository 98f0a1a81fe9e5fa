"""WorkerPool on its own: real worker processes over real SQLite files, no engine around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.algorithm_api import AlgorithmParamError
from app.engine.plugins.loader import AlgorithmLoadError
from app.engine.plugins.pool import WorkerPool, death_reason
from app.engine.plugins.runner import AlgorithmFault, Decision
from app.storage.market_store import MarketStore
from app.storage.records import BarSource
from app.storage.system_store import SystemStore
from tests.engine.algo_helpers import make_bars, minute

BROKEN = [Path(__file__).parents[1] / "engine" / "broken_algorithms"]
HOSTILE = [Path(__file__).parent / "hostile_algorithms"]
NOW = minute(5)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """stocks.db with five TEST bars, system.db with one card."""
    with MarketStore(tmp_path / "stocks.db") as market:
        market.upsert_bars("TEST", make_bars([10.0, 11.0, 12.0, 13.0, 14.0]), source=BarSource.UNKNOWN)
    with SystemStore(tmp_path / "system.db") as system:
        system.create_instance("TEST", "healthy", 10_000.0, {})
    return tmp_path / "stocks.db", tmp_path / "system.db"


@pytest.fixture
def pool(files: tuple[Path, Path]):
    with WorkerPool(market_path=files[0], system_path=files[1], time_budget_s=1.0, workers=2) as workers:
        workers.warm()
        yield workers


def card(pool: WorkerPool, key: int, kind: str, dirs=BROKEN, **params: object):
    return pool.load(key, kind, "TEST", 10_000, params, dirs)


def pids(pool: WorkerPool) -> set[int]:
    return {p.process.pid for p in pool._procs}


def test_decisions_faults_and_order_as_the_thread_runner_gives_them(pool: WorkerPool) -> None:
    kinds = ["raises", "returns_none", "returns_negative", "returns_huge", "healthy"]
    results = pool.run_many([(card(pool, i, kind), NOW, i) for i, kind in enumerate(kinds)])
    assert results[4] == Decision("buy", 3)
    assert results[0] == AlgorithmFault(
        "ZeroDivisionError: integer division or modulo by zero (raises.py line 12)", "exception")
    assert results[1].reason == "returned None: expected (action, shares)"
    assert results[2].reason == "returned ('buy', -5): shares must be at least 1"
    assert results[3].reason == "returned ('buy', 1000000000): absurd share count (limit 1,000,000)"
    many = pool.run_many([(card(pool, 10 + n, "healthy", shares=n), NOW, 1) for n in range(1, 31)])
    assert [d.shares for d in many] == list(range(1, 31))


def test_a_sleeper_is_cut_off_and_the_others_still_answer(pool: WorkerPool) -> None:
    calls = [(card(pool, 1, "sleeps", seconds=30.0), NOW, 1)] + [
        (card(pool, k, "healthy"), NOW, k) for k in range(2, 12)]
    before = pids(pool)
    results = pool.run_many(calls)
    assert results[0] == AlgorithmFault("took longer than 1 s", "timeout")
    assert results[1:] == [Decision("buy", 3)] * 10
    after = pids(pool)
    assert len(after) == 2 and len(before - after) == 1  # the sleeper's worker was killed and replaced
    # The next minute every healthy card is answered again, rebuilt where its worker was replaced.
    assert pool.run_many(calls[1:]) == [Decision("buy", 3)] * 10


def test_a_dead_worker_faults_only_the_card_in_its_call(pool: WorkerPool) -> None:
    calls = [(card(pool, k, "healthy"), NOW, k) for k in range(1, 9)]
    calls.insert(3, (card(pool, 99, "exits", dirs=HOSTILE), NOW, 99))
    results = pool.run_many(calls)
    assert results[3] == AlgorithmFault("the algorithm ended its process (exit status 3)", "died")
    assert [r for i, r in enumerate(results) if i != 3] == [Decision("buy", 3)] * 8


def test_system_exit_in_run_is_a_fault_and_the_worker_lives_on(pool: WorkerPool, tmp_path: Path) -> None:
    (tmp_path / "algos").mkdir()
    (tmp_path / "algos" / "quitter.py").write_text(
        "from app.engine.algorithm_api import AlgorithmBase\n"
        "class Algorithm(AlgorithmBase):\n"
        "    def run(self, current_time, algo_id):\n"
        "        raise SystemExit(3)\n")
    before = pids(pool)
    fault = pool.run_many([(card(pool, 1, "quitter", dirs=[tmp_path / "algos"]), NOW, 1)])[0]
    assert fault == AlgorithmFault("SystemExit: 3 (quitter.py line 4)", "exception")
    assert pids(pool) == before


def test_check_resolves_parameters_and_reports_problems_in_words(pool: WorkerPool) -> None:
    assert pool.check("healthy", "TEST", 10_000, {"shares": "7"}, BROKEN) == {"shares": 7}
    with pytest.raises(AlgorithmParamError, match="unknown parameter 'share' for healthy; did you mean 'shares'"):
        pool.check("healthy", "TEST", 10_000, {"share": 7}, BROKEN)
    with pytest.raises(AlgorithmLoadError, match="unknown algorithm type 'nope'"):
        pool.check("nope", "TEST", 10_000, {}, BROKEN)
    with pytest.raises(AlgorithmLoadError, match=r"failed to start: the algorithm ended its process"):
        pool.check("exits_in_init", "TEST", 10_000, {}, HOSTILE)


def test_a_stored_card_whose_file_no_longer_loads_is_faulted_with_the_loader_sentence(pool: WorkerPool) -> None:
    fault = pool.run_many([(card(pool, 1, "syntax_error"), NOW, 1)])[0]
    assert fault.kind == "load"
    assert fault.reason.startswith("algorithm 'syntax_error' (syntax_error.py) cannot be loaded")
    fault = pool.run_many([(card(pool, 2, "healthy", shares=0), NOW, 2)])[0]
    assert fault == AlgorithmFault("cannot start the algorithm: parameter 'shares' must be at least 1; got 0", "load")


def test_workers_read_through_read_only_connections(pool: WorkerPool, files: tuple[Path, Path]) -> None:
    # A write through the worker's own data context is refused by SQLite itself, not only by the guard.
    from app.engine.plugins.worker_main import ReadOnlyContext

    context = ReadOnlyContext(str(files[0]), str(files[1]))
    _, system = context._stores()
    with pytest.raises(Exception, match="readonly|read-only"):
        system.set_config("forged", "1")
    assert context.last_bars("TEST", 2, 2**40)[-1].close == 14.0


def test_death_reasons_say_what_happened() -> None:
    assert death_reason(0) == "the algorithm ended its process"
    assert death_reason(3) == "the algorithm ended its process (exit status 3)"
    assert death_reason(-9) == "the algorithm's process was killed (SIGKILL; out of memory?)"
    assert death_reason(-11) == "the algorithm's process crashed (SIGSEGV)"


def test_closing_the_pool_ends_every_worker(files: tuple[Path, Path]) -> None:
    pool = WorkerPool(market_path=files[0], system_path=files[1], time_budget_s=1.0, workers=2)
    pool.warm()
    started = [p.process for p in pool._procs]
    assert all(p.is_alive() for p in started)
    pool.close()
    assert not any(p.is_alive() for p in started)
    with pytest.raises(RuntimeError, match="closed"):
        pool.run_many([])


def test_an_algorithm_using_numpy_and_pandas_runs_unchanged_in_a_worker(pool: WorkerPool, tmp_path: Path) -> None:
    (tmp_path / "algos").mkdir()
    (tmp_path / "algos" / "numeric.py").write_text(
        "import numpy as np\n"
        "import pandas as pd\n"
        "from app.engine.algorithm_api import AlgorithmBase\n"
        "class Algorithm(AlgorithmBase):\n"
        "    def run(self, current_time, algo_id):\n"
        "        closes = pd.Series([b.close for b in self.bars_before(5)])\n"
        "        return ('buy', int(np.round(closes.mean()))) if len(closes) else ('hold', 0)\n")
    numeric = card(pool, 1, "numeric", dirs=[tmp_path / "algos"])
    # Importing pandas can take longer than a minute's budget: it happens ahead, under the start limit.
    assert pool.prepare([numeric]) == {}
    result = pool.run_many([(numeric, NOW, 1)])[0]
    assert result == Decision("buy", 12)  # the mean of the five closes 10..14, read through the worker


def test_prepare_faults_a_constructor_that_blocks_past_the_start_limit(files: tuple[Path, Path]) -> None:
    with WorkerPool(market_path=files[0], system_path=files[1], time_budget_s=1.0, workers=2,
                    start_limit_s=1.5) as pool:
        blocker, healthy = card(pool, 1, "blocks_in_init", dirs=HOSTILE), card(pool, 2, "healthy")
        assert pool.prepare([blocker, healthy]) == {1: AlgorithmFault("took longer than 1.5 s to start", "timeout")}
        assert pool.run_many([(healthy, NOW, 2)]) == [Decision("buy", 3)]
