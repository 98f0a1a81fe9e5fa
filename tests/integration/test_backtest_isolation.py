"""Backtests in worker processes: same result as in-process, a dying algorithm fails only its job,
a cancel kills the worker (real BacktestJobs, real forkserver processes, real sim data folder)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.engine.backtest.jobs import BacktestJobs
from app.engine.backtest.replay import BacktestCancelled, BacktestRequest, BacktestRunError
from app.engine.system.settings import Settings

HOSTILE = Path(__file__).parent / "hostile_algorithms"
BROKEN = Path(__file__).parents[1] / "engine" / "broken_algorithms"
DAYS = (date(2024, 3, 4), date(2024, 3, 5))


def settings(tmp_path: Path) -> Settings:
    return Settings(data_root=tmp_path / "data", sim_forced=True, algorithm_dirs=(HOSTILE, BROKEN))


def test_an_isolated_backtest_gives_the_in_process_result_and_reports_progress(tmp_path: Path) -> None:
    request = BacktestRequest("sma_crossover", "MSFT", *DAYS, params={"fast": 2, "slow": 3}, warmup_sessions=1)
    here = BacktestJobs(settings(tmp_path), isolated=False).start(request)[1].result(120)
    fractions: list[float] = []
    there = BacktestJobs(settings(tmp_path)).start(request, fractions.append)[1].result(120)
    timeless = [{k: v for k, v in r.to_json().items() if k != "elapsed_s"} for r in (here, there)]
    assert timeless[0] == timeless[1]
    assert there.trades  # a 2/3 crossover trades in two sessions
    assert fractions and fractions[-1] == pytest.approx(1.0)


def test_an_algorithm_that_ends_its_process_fails_only_its_backtest(tmp_path: Path) -> None:
    request = BacktestRequest("exits", "MSFT", *DAYS, warmup_sessions=1)
    future = BacktestJobs(settings(tmp_path)).start(request)[1]
    stopped = r"the backtest stopped: the algorithm ended its process \(exit status 3\)"
    with pytest.raises(BacktestRunError, match=stopped):
        future.result(120)


def test_cancel_kills_a_backtest_stuck_in_its_algorithm(tmp_path: Path) -> None:
    request = BacktestRequest("sleeps", "MSFT", *DAYS, params={"seconds": 600.0}, warmup_sessions=1)
    jobs = BacktestJobs(settings(tmp_path))
    job_id, future = jobs.start(request)
    with pytest.raises(TimeoutError):
        future.result(3)  # stuck in a 600 s sleep
    assert jobs.cancel(job_id)
    with pytest.raises(BacktestCancelled):
        future.result(30)
    assert jobs.running == 0


def test_an_isolated_backtest_leaves_the_kiosks_collector_running(tmp_path: Path) -> None:
    """Its replay runs in the worker: pausing the kiosk's collector meanwhile would only pile up a
    bigger collection for the UI thread later."""
    import gc

    request = BacktestRequest("sleeps", "MSFT", *DAYS, params={"seconds": 600.0}, warmup_sessions=1)
    jobs = BacktestJobs(settings(tmp_path))
    job_id, future = jobs.start(request)
    with pytest.raises(TimeoutError):
        future.result(3)  # running, in its 600 s sleep
    assert gc.isenabled()
    jobs.cancel(job_id)
    with pytest.raises(BacktestCancelled):
        future.result(30)


def test_a_backtest_worker_runs_one_openblas_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    request = BacktestRequest("blas_threads", "MSFT", *DAYS, warmup_sessions=1)
    assert BacktestJobs(settings(tmp_path)).start(request)[1].result(120).minutes == 2 * 390
