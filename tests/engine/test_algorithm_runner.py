"""GuardedRunner: a misbehaving algorithm faults alone, on time, with a readable reason."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from app.engine.algorithm_api import AlgorithmBase
from app.engine.plugins.loader import create_algorithm
from app.engine.plugins.runner import (
    HOLD, MAX_SHARES, AlgorithmFault, Decision, GuardedRunner, validate_decision,
)

from .algo_helpers import MemoryContext, make_bars, minute

BROKEN = [Path(__file__).parent / "broken_algorithms"]
NOW = minute(5)


@pytest.fixture
def ctx() -> MemoryContext:
    return MemoryContext(make_bars([10.0, 11.0, 12.0, 13.0, 14.0]))


@pytest.fixture
def runner():
    with GuardedRunner(time_budget_s=0.5) as guarded:
        yield guarded


def make(kind: str, ctx: MemoryContext, **params: object) -> AlgorithmBase:
    return create_algorithm(kind, "TEST", 10_000, params, BROKEN, context=ctx)


# --- return validation ---------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (("buy", 5), Decision("buy", 5)),
    (["sell", 1], Decision("sell", 1)),
    (("hold", 0), HOLD),
    (("hold", "whatever"), HOLD),
    (("buy", MAX_SHARES), Decision("buy", MAX_SHARES)),
])
def test_valid_decisions_pass(value: object, expected: Decision) -> None:
    assert validate_decision(value) == expected


@pytest.mark.parametrize(("value", "reason"), [
    (None, "returned None: expected (action, shares)"),
    (("buy",), "returned ('buy',): expected (action, shares)"),
    ("buy", "returned 'buy': expected (action, shares)"),
    (("BUY", 5), "returned ('BUY', 5): action must be 'buy', 'sell' or 'hold'"),
    (("short", 5), "returned ('short', 5): action must be 'buy', 'sell' or 'hold'"),
    (("buy", 2.0), "returned ('buy', 2.0): shares must be a whole number"),
    (("buy", True), "returned ('buy', True): shares must be a whole number"),
    (("buy", "5"), "returned ('buy', '5'): shares must be a whole number"),
    (("buy", -5), "returned ('buy', -5): shares must be at least 1"),
    (("sell", 0), "returned ('sell', 0): shares must be at least 1"),
    (("buy", MAX_SHARES + 1), "returned ('buy', 1000001): absurd share count (limit 1,000,000)"),
])
def test_invalid_decisions_fault_with_the_value_shown(value: object, reason: str) -> None:
    with pytest.raises(AlgorithmFault) as caught:
        validate_decision(value)
    assert caught.value.reason == reason and caught.value.kind == "bad_return"


# --- guarded calls -------------------------------------------------------------------

def test_every_broken_algorithm_faults_alone_and_the_healthy_one_still_decides(
        ctx: MemoryContext, runner: GuardedRunner) -> None:
    kinds = ["raises", "returns_none", "returns_negative", "returns_huge", "sleeps", "healthy"]
    algos = [make(kind, ctx) for kind in kinds]
    started = time.monotonic()
    results = dict(zip(kinds, runner.run_many([(a, NOW, i) for i, a in enumerate(algos, 1)])))
    elapsed = time.monotonic() - started

    assert results["healthy"] == Decision("buy", 3)
    assert results["raises"] == AlgorithmFault(
        "ZeroDivisionError: integer division or modulo by zero (raises.py line 12)", "exception")
    assert results["returns_none"].reason == "returned None: expected (action, shares)"
    assert results["returns_negative"].reason == "returned ('buy', -5): shares must be at least 1"
    assert results["returns_huge"].reason == (
        "returned ('buy', 1000000000): absurd share count (limit 1,000,000)")
    assert results["sleeps"] == AlgorithmFault("took longer than 0.5 s", "timeout")
    assert elapsed >= 0.45  # the sleeper (1 s) ran into its budget; when it is cut off is the fault above


def test_a_sleeper_does_not_delay_a_healthy_result_in_run(ctx: MemoryContext) -> None:
    with GuardedRunner(time_budget_s=0.2) as runner:
        sleeper, healthy = make("sleeps", ctx, seconds=1.0), make("healthy", ctx)
        with pytest.raises(AlgorithmFault, match=r"took longer than 0\.2 s"):
            runner.run(sleeper, NOW, 1)
        # The stuck worker was replaced: the next call is answered while the sleeper still sleeps.
        assert runner.run(healthy, NOW, 2) == Decision("buy", 3)
        # The stuck instance itself is refused until its abandoned call returns.
        busy = runner.run_many([(sleeper, NOW, 1)])[0]
        assert busy == AlgorithmFault("still running its previous call", "busy")


def test_many_slow_algorithms_cannot_starve_the_others(ctx: MemoryContext) -> None:
    # Two workers, ten calls of 0.3 s each: slow workers are replaced, so all finish in time.
    with GuardedRunner(time_budget_s=2.0, workers=2) as runner:
        slow = [make("sleeps", ctx, seconds=0.3) for _ in range(10)]
        healthy = make("healthy", ctx)
        results = runner.run_many([(a, NOW, i) for i, a in enumerate([*slow, healthy])])
    # Every call finished inside the 2 s budget: none was faulted as a timeout. (How long the batch
    # takes is a figure of bench/bench_runner.py, not a limit here.)
    assert results == [HOLD] * 10 + [Decision("buy", 3)]


def test_an_exception_raised_inside_the_api_points_at_the_algorithm_line(
        ctx: MemoryContext, runner: GuardedRunner) -> None:
    class Misuse(AlgorithmBase):
        def run(self, current_time: datetime, algo_id: int) -> tuple[str, int]:
            self.bars_before(-1)
            return ("hold", 0)

    fault = runner.run_many([(Misuse("TEST", 100), NOW, 1)])[0]
    assert isinstance(fault, AlgorithmFault) and fault.kind == "exception"
    assert re.fullmatch(r"AlgorithmError: bars_before needs a whole number n >= 0; got -1 "
                        r"\(test_algorithm_runner\.py line \d+\)", fault.reason), fault.reason


def test_system_exit_inside_an_algorithm_is_only_a_fault(runner: GuardedRunner) -> None:
    class Quitter(AlgorithmBase):
        def run(self, current_time: datetime, algo_id: int) -> tuple[str, int]:
            raise SystemExit(3)

    fault = runner.run_many([(Quitter("TEST", 100), NOW, 1)])[0]
    assert fault.reason.startswith("SystemExit: 3 (test_algorithm_runner.py line ")
    assert runner.run_many([(Quitter("TEST", 100), NOW, 1)])[0].kind == "exception"  # workers survive


def test_run_many_keeps_input_order_and_handles_an_empty_list(ctx: MemoryContext, runner: GuardedRunner) -> None:
    assert runner.run_many([]) == []
    algos = [make("healthy", ctx, shares=n) for n in range(1, 21)]
    results = runner.run_many([(a, NOW, i) for i, a in enumerate(algos)])
    assert [r.shares for r in results] == list(range(1, 21))


def test_per_call_overhead_is_small_for_a_hundred_trivial_algorithms(ctx: MemoryContext) -> None:
    with GuardedRunner() as runner:
        items = [(make("healthy", ctx), NOW, i) for i in range(100)]
        best = float("inf")
        for _ in range(10):
            started = time.perf_counter()
            results = runner.run_many(items)
            best = min(best, time.perf_counter() - started)
    assert results == [Decision("buy", 3)] * 100
    assert best / 100 < 100e-6, f"{best / 100 * 1e6:.1f} µs per algorithm"


def test_bad_runner_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="time budget must be positive"):
        GuardedRunner(time_budget_s=0)
    closed = GuardedRunner()
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.run_many([])


def test_a_stuck_algorithm_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(
        "from datetime import datetime, timezone\n"
        "from app.engine.algorithm_api import AlgorithmBase\n"
        "from app.engine.plugins.runner import GuardedRunner\n"
        "class Spin(AlgorithmBase):\n"
        "    def run(self, current_time, algo_id):\n"
        "        while True:\n"
        "            pass\n"
        "runner = GuardedRunner(time_budget_s=0.2)\n"
        "now = datetime(2024, 6, 4, 14, 0, tzinfo=timezone.utc)\n"
        "print(runner.run_many([(Spin('TEST', 100), now, 1)])[0].reason)\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(script)], cwd=root, capture_output=True, text=True, timeout=20,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "took longer than 0.2 s"
