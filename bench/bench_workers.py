"""Benchmark: the minute cycle with algorithms in worker processes beside the in-process runner.

The same 100 cards on 20 tickers as bench_cycle.py (the shipped algorithms, SimBroker), stepped
over the first ``--minutes`` of a session on a ManualClock; the figure is TradingCycle.run_minute
alone, once with ``algorithm_workers=0`` (GuardedRunner: threads in this process) and once with
the WorkerPool (``--workers`` processes, each reading stocks.db and system.db read-only).
The two engines are stepped minute by minute in turn (a busy machine slows both alike). The first
minute (workers build every card: imports and constructors) is reported separately.
Target: worker median within 1.5x of the in-process median.

Last line, one JSON object: instances, minutes, workers, inprocess_cycle_median_ms,
worker_cycle_median_ms, worker_cycle_p99_ms, worker_first_minute_ms, worker_ratio.

    .venv/bin/python bench/bench_workers.py [--instances 100] [--minutes 60] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cycle import ALGORITHMS, CAPITAL, SESSION, TICKERS, WAKE, percentile  # noqa: E402

from app.engine.host.service import EngineService  # noqa: E402
from app.engine.host.wiring import EngineOptions, EngineParts  # noqa: E402
from app.engine.marketdata.clock import ManualClock  # noqa: E402
from app.engine.system.settings import Settings  # noqa: E402
from app.storage.timefmt import from_epoch  # noqa: E402


def build(root: Path, instances: int, workers: int) -> tuple[EngineParts, ManualClock]:
    """A sim engine over ``root`` with ``instances`` cards, its runner with ``workers`` processes (0: none)."""
    settings = Settings(data_root=root, sim_forced=True)
    options = EngineOptions(sim_starting_cash=Decimal(CAPITAL) * instances * 2, algorithm_workers=workers)
    open_minute = datetime(2024, 6, 4, 13, 30, tzinfo=timezone.utc)
    clock = ManualClock(open_minute - timedelta(minutes=1))
    parts = EngineParts.build(settings, clock=clock, options=options)
    service = EngineService(parts)
    for i in range(instances):
        algo, params = ALGORITHMS[i % len(ALGORITHMS)]
        service.create_instance(TICKERS[i % len(TICKERS)], algo, CAPITAL, params)
    parts.feed.set_symbols(sorted({i.ticker for i in parts.system.all_instances("running")}))
    return parts, clock


def step(parts: EngineParts, clock: ManualClock, minute: datetime) -> tuple[float, int]:
    """One minute as the orchestrator runs it; the run_minute duration (ms) and orders placed."""
    clock.set(minute + WAKE)
    parts.feed.poll(clock.now())
    t0 = time.perf_counter()
    result = parts.cycle.run_minute(minute)
    elapsed = (time.perf_counter() - t0) * 1000
    assert not result.faults, result.faults
    return elapsed, result.orders


def run_both(root: Path, instances: int, minutes: int, workers: int) -> tuple[list[float], list[float], int, int]:
    """Both engines stepped minute by minute in turn, so a busy machine slows both alike."""
    here, here_clock = build(root / "inprocess", instances, 0)
    pool, pool_clock = build(root / "workers", instances, workers)
    durations: tuple[list[float], list[float]] = ([], [])
    orders = [0, 0]
    try:
        for ts in here.calendar.session_minutes(SESSION)[:minutes]:
            minute = from_epoch(ts)
            for i, (parts, clock) in enumerate(((here, here_clock), (pool, pool_clock))):
                took, placed = step(parts, clock, minute)
                durations[i].append(took)
                orders[i] += placed
        starts = getattr(pool.runner, "_started", 0)
    finally:
        here.close()
        pool.close()
    print(f"worker processes started: {starts}")
    return durations[0], durations[1], orders[0], orders[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp:
        here, pool, here_orders, pool_orders = run_both(Path(tmp), args.instances, args.minutes, args.workers)
    here, steady = here[1:], pool[1:]
    print(f"in-process: median {statistics.median(here):.2f} ms over {len(here)} minutes, {here_orders} orders")
    print(f"workers ({args.workers}): median {statistics.median(steady):.2f} ms, p99 {percentile(steady, 99):.2f} ms, "
          f"first minute {pool[0]:.1f} ms, {pool_orders} orders")
    print(json.dumps({
        "instances": args.instances,
        "minutes": args.minutes,
        "workers": args.workers,
        "inprocess_cycle_median_ms": round(statistics.median(here), 2),
        "worker_cycle_median_ms": round(statistics.median(steady), 2),
        "worker_cycle_p99_ms": round(percentile(steady, 99), 2),
        "worker_first_minute_ms": round(pool[0], 1),
        "worker_ratio": round(statistics.median(steady) / statistics.median(here), 2),
        "same_orders": here_orders == pool_orders,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
