"""Guarded algorithm calls: how long a batch takes when some algorithms are slow.

Ten algorithms that each sleep 0.3 s and one healthy one, through a GuardedRunner with two
workers and a 2 s budget: stuck workers are replaced, so the batch should take about one sleep, not
ten (the serial reference, 3.0 s, and two workers without replacement, 1.5 s). Also the time from
calling a 1 s sleeper with a 0.2 s budget to its timeout fault, and the next healthy call after it.

Prints one JSON object on its last line: batch_s, serial_s, two_workers_s, timeout_fault_s,
next_call_ms. These were wall-clock asserts inside tests/engine/test_algorithm_runner.py; on a busy
machine they are figures, not limits.

    .venv/bin/python bench/bench_runner.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.plugins.loader import create_algorithm  # noqa: E402
from app.engine.plugins.runner import AlgorithmFault, GuardedRunner  # noqa: E402
from tests.engine.algo_helpers import MemoryContext, make_bars, minute  # noqa: E402

BROKEN = [ROOT / "tests" / "engine" / "broken_algorithms"]
NOW = minute(5)


def make(kind: str, ctx: MemoryContext, **params: object):
    return create_algorithm(kind, "TEST", 10_000, params, BROKEN, context=ctx)


def batch_once(ctx: MemoryContext) -> float:
    with GuardedRunner(time_budget_s=2.0, workers=2) as runner:
        calls = [make("sleeps", ctx, seconds=0.3) for _ in range(10)] + [make("healthy", ctx)]
        started = time.perf_counter()
        runner.run_many([(a, NOW, i) for i, a in enumerate(calls)])
        return time.perf_counter() - started


def timeout_once(ctx: MemoryContext) -> tuple[float, float]:
    with GuardedRunner(time_budget_s=0.2) as runner:
        sleeper, healthy = make("sleeps", ctx, seconds=1.0), make("healthy", ctx)
        started = time.perf_counter()
        try:
            runner.run(sleeper, NOW, 1)
        except AlgorithmFault:
            pass
        fault_s = time.perf_counter() - started
        started = time.perf_counter()
        runner.run(healthy, NOW, 2)
        return fault_s, (time.perf_counter() - started) * 1000


def main() -> None:
    ctx = MemoryContext(make_bars([10.0, 11.0, 12.0, 13.0, 14.0]))
    batches = [batch_once(ctx) for _ in range(3)]
    timeouts = [timeout_once(ctx) for _ in range(3)]
    figures = {
        "batch_s": round(min(batches), 3),
        "serial_s": 3.0,
        "two_workers_s": 1.5,
        "timeout_fault_s": round(statistics.median(t[0] for t in timeouts), 3),
        "next_call_ms": round(statistics.median(t[1] for t in timeouts), 2),
    }
    print(f"10 slow + 1 healthy: {figures['batch_s']} s (serial {figures['serial_s']} s); "
          f"0.2 s budget faulted after {figures['timeout_fault_s']} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
