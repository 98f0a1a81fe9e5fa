"""Hostile algorithms in worker processes: each one beside a healthy card, on the real sim engine.

The engine is the product's (EngineParts with its WorkerPool of real forkserver processes, real
SQLite files, the SimBroker), stepped minute by minute. For every hostile file the healthy
flipper trades every minute, the hostile card is faulted with its reason, and this process —
the kiosk's — is still here to assert it.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.engine.host.client import ServiceError
from app.engine.host.wiring import EngineOptions
from app.engine.plugins.breaker import KEY as IN_FLIGHT_KEY
from app.engine.plugins.loader import clear_cache, discover
from app.engine.plugins.pool import WorkerPool
from tests.cli_helpers import run_cli
from tests.engine.crash_child import FLIPPER_SOURCE, SimRig, write_algorithm

HOSTILE = Path(__file__).parent / "hostile_algorithms"
BROKEN = Path(__file__).parents[1] / "engine" / "broken_algorithms"
START = datetime(2024, 6, 4, 13, 29, tzinfo=timezone.utc)
BUDGET_S = 2.0
OPTIONS = EngineOptions(time_budget_s=BUDGET_S, algorithm_workers=2, worker_memory_mb=256,
                        algorithm_start_limit_s=3.0)


@pytest.fixture
def rig(tmp_path: Path):
    healthy = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    engine = SimRig(tmp_path / "data", START, algorithm_dirs=(HOSTILE, healthy),
                    options=OPTIONS)
    engine.start()
    yield engine
    engine.close()


def store_card(rig: SimRig, algorithm_type: str, **params: str) -> int:
    """A card as a file that changed after it was added would leave it: stored without a check."""
    return rig.system.create_instance("MSFT", algorithm_type, 5_000.0, params)


def run_minutes(rig: SimRig, healthy: int, count: int = 3) -> list:
    """Step ``count`` minutes; the healthy card must place an order in every one of them."""
    results = []
    minutes = rig.session_minutes(START.date())[:count]
    for minute in minutes:
        result = rig.step(minute)
        actions = {o.instance_id: o for o in result.outcomes}
        assert actions[healthy].action in ("buy", "sell"), actions[healthy]
        results.append(result)
    return results


def faults_of(results: list, card: int) -> list[str]:
    return [o.reason for r in results for o in r.outcomes if o.instance_id == card and o.action == "fault"]


def workers_alive(rig: SimRig) -> list[int]:
    pool = rig.parts.runner
    assert isinstance(pool, WorkerPool)
    return [p.process.pid for p in pool._procs if p.process.is_alive()]


def test_an_algorithm_that_ends_its_process_faults_alone(rig: SimRig) -> None:
    healthy = rig.add("AAPL", "flipper", 10_000)
    bad = rig.add("MSFT", "exits", 5_000)
    results = run_minutes(rig, healthy)
    assert faults_of(results, bad) == ["the algorithm ended its process (exit status 3)"]
    assert rig.system.get_instance(bad).faulted_reason == "the algorithm ended its process (exit status 3)"
    assert len(rig.system.orders_for(healthy)) == 3
    assert len(workers_alive(rig)) == 2  # the dead worker was replaced


def test_a_memory_bomb_is_stopped_at_the_limit_and_faults_alone(rig: SimRig) -> None:
    healthy = rig.add("AAPL", "flipper", 10_000)
    bad = rig.add("MSFT", "memory_bomb", 5_000)
    results = run_minutes(rig, healthy)
    assert faults_of(results, bad) == ["used more than 256 MB"]
    assert len(rig.system.orders_for(healthy)) == 3


def test_a_blocking_constructor_is_refused_at_add_and_faults_a_stored_card(rig: SimRig) -> None:
    healthy = rig.add("AAPL", "flipper", 10_000)
    with pytest.raises(ServiceError, match=r"algorithm 'blocks_in_init' failed to start: took longer than 3 s"):
        rig.add("MSFT", "blocks_in_init", 5_000)
    bad = store_card(rig, "blocks_in_init")
    results = run_minutes(rig, healthy)
    assert faults_of(results, bad) == ["took longer than 2 s"]
    assert len(rig.system.orders_for(healthy)) == 3


def test_a_blocking_constructor_found_at_start_is_faulted_before_the_first_minute(tmp_path: Path) -> None:
    healthy_dir = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    rig = SimRig(tmp_path / "data", START, algorithm_dirs=(HOSTILE, healthy_dir), options=OPTIONS)
    try:
        healthy = rig.add("AAPL", "flipper", 10_000)
        bad = store_card(rig, "blocks_in_init")
        rig.start()
        assert rig.system.get_instance(bad).faulted_reason == "took longer than 3 s to start"
        results = run_minutes(rig, healthy, count=2)
        assert faults_of(results, bad) == []  # already faulted: not called again
    finally:
        rig.close()


def test_threads_an_algorithm_leaves_running_fault_it_and_die_with_its_worker(rig: SimRig) -> None:
    healthy = rig.add("AAPL", "flipper", 10_000)
    before = threading.active_count()
    bad = rig.add("MSFT", "spawns_threads", 5_000)  # its constructor is harmless
    pids = workers_alive(rig)
    results = run_minutes(rig, healthy)
    assert faults_of(results, bad) == ["left 1 thread running after its call"]
    assert threading.active_count() == before  # none of its threads is in this process
    # The worker that ran it is gone (with its spinning thread); fresh ones took its place.
    after = workers_alive(rig)
    assert len(after) == 2 and set(after) != set(pids)
    for pid in set(pids) - set(after):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_an_algorithm_cannot_write_system_db_and_is_faulted(rig: SimRig) -> None:
    healthy = rig.add("AAPL", "flipper", 10_000)
    path = str(rig.parts.paths.system_db)
    bad = rig.add("MSFT", "writes_system_db", 5_000, path=path)
    results = run_minutes(rig, healthy)
    reasons = faults_of(results, bad)
    assert reasons == ["tried opening system.db for writing (algorithms have read-only data access)"]
    assert rig.system.get_transactions(bad) == []  # no forged fill reached the file
    ok, problem = rig.system.integrity_check()
    assert ok, problem


def test_the_kiosk_dying_during_a_call_twice_faults_that_card_at_start(tmp_path: Path) -> None:
    healthy_dir = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    options = EngineOptions(time_budget_s=BUDGET_S, algorithm_workers=1)
    rig = SimRig(tmp_path / "data", START, algorithm_dirs=(healthy_dir,), options=options)
    card = rig.add("AAPL", "flipper", 10_000)
    other = rig.add("MSFT", "flipper", 10_000)
    rig.close()
    # What a kiosk killed inside the minute's calls leaves behind, written the way the cycle does.
    for deaths in (1, 2):
        rig = SimRig(tmp_path / "data", START, algorithm_dirs=(healthy_dir,), options=options)
        rig.system.set_configs({IN_FLIGHT_KEY: json.dumps(
            {"calls": [card], "strikes": json.loads(rig.system.get_config(IN_FLIGHT_KEY) or "{}").get(
                "strikes", {})})}, durable=True)
        rig.close()
        rig = SimRig(tmp_path / "data", START, algorithm_dirs=(healthy_dir,), options=options)
        rig.start()
        reason = rig.system.get_instance(card).faulted_reason
        if deaths == 1:
            assert reason is None  # one death (a power cut, say) is not enough
        else:
            assert reason == "the kiosk stopped during this card's call 2 times in a row (crash-loop breaker)"
        assert rig.system.get_instance(other).faulted_reason is None
        rig.close()


NAPS_SOURCE = """
import time
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Naps"
    description = "Sleeps well within the budget, then holds."

    def run(self, current_time, algo_id):
        time.sleep(0.8)
        return ("hold", 0)
"""


def test_a_minutes_calls_are_on_disk_while_they_run_so_a_death_there_gives_strikes(tmp_path: Path) -> None:
    """The write side of the crash-loop breaker: what a kiosk killed inside the calls leaves behind."""
    algos = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    write_algorithm(algos, "naps", NAPS_SOURCE)
    rig = SimRig(tmp_path / "data", START, algorithm_dirs=(algos,), options=OPTIONS)
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:  # another connection, as the next start would read the file
        conn = sqlite3.connect(f"file:{rig.system.path}?mode=ro", uri=True)
        try:
            while not done.is_set():
                row = conn.execute("SELECT value FROM system_config WHERE key = ?", (IN_FLIGHT_KEY,)).fetchone()
                if row and row[0] not in seen:
                    seen.append(row[0])
                done.wait(0.02)
        finally:
            conn.close()

    try:
        healthy = rig.add("AAPL", "flipper", 10_000)
        slow = rig.add("MSFT", "naps", 5_000)
        rig.start()
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            (minute,) = rig.session_minutes(START.date())[:1]
            result = rig.step(minute)
        finally:
            done.set()
            watcher.join(10)
        actions = {o.instance_id: o.action for o in result.outcomes}
        assert actions[healthy] in ("buy", "sell") and actions[slow] == "hold", actions
        # While the calls ran, both cards were recorded as in flight; once answered, nothing is.
        assert [sorted(json.loads(v)["calls"]) for v in seen] == [sorted([healthy, slow])]
        assert rig.system.get_config(IN_FLIGHT_KEY) is None
    finally:
        rig.close()


def test_a_completed_call_clears_the_in_flight_record(rig: SimRig) -> None:
    healthy = rig.add("AAPL", "flipper", 10_000)
    run_minutes(rig, healthy, count=1)
    assert rig.system.get_config(IN_FLIGHT_KEY) is None


def test_the_catalogue_lists_hostile_imports_as_broken_without_running_them_here() -> None:
    clear_cache()
    infos = {i.algorithm_type: i for i in discover([HOSTILE / "at_import"], time_limit_s=1.0)}
    assert infos["sleeps_at_import"].error == "took longer than 1 s to load"
    assert infos["exits_at_import"].error == "the algorithm ended its process (exit status 1) while loading"
    assert infos["fine"].ok and infos["fine"].name == "Fine"
    assert infos["fine"].parameters["n"].default == 2
    shipped = {i.algorithm_type: i for i in discover()}["sma_crossover"]  # described by a worker too
    assert shipped.card_label({"fast": 5, "slow": 20}) == "SMA 5/20"
    # This process never executed them: neither module was ever registered here.
    assert not {"autotrader_algorithms.sleeps_at_import", "autotrader_algorithms.exits_at_import"} & set(sys.modules)


def test_autotrader_algorithms_survives_files_that_hang_or_exit_at_import(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    done = run_cli(tmp_path / "data", "algorithms", AUTOTRADER_ALGORITHM_DIRS=str(HOSTILE / "at_import"),
                   XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert done.returncode == 0, done.stderr
    by_type = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert "BROKEN: took longer than 5 s to load" in by_type["sleeps_at_import"]
    assert "BROKEN: the algorithm ended its process (exit status 1) while loading" in by_type["exits_at_import"]
    assert "BROKEN" not in by_type["fine"] and "BROKEN" not in by_type["sma_crossover"]
