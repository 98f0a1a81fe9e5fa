"""Benchmark of start-up, memory and the minute with a long trading history behind every card.

Seeds ``--cards`` running cards (the shipped algorithms, 20 tickers) and gives each
``--fills`` earlier fills (buy/sell pairs of one share at varied prices five minutes apart, so
positions are unchanged), then in a fresh interpreter measures:

- ``start_s``: what the engine does before the kiosk shows cards: build the parts, reconcile at
  start, the first cards and the available cash, on a restart (the ledger's checkpoint written
  at the previous stop); ``start_s_first`` the same over a folder that has none yet (the first
  start after an upgrade: every fill summed);
- ``rss_mb``: the process's resident memory after start and the measured minutes;
- ``cycle_median_ms``: a minute (``run_minute`` plus building the cards the UI is sent), over the
  first ``--minutes`` of a session; ``cycle_median_ms_no_history`` the same cards without fills
  and ``history_ratio`` the quotient (target <= 1.2);
- ``gc_full_ms``: one full ``gc.collect()`` after the measured minutes (the pause it puts on
  every thread).
  Start-up ends with ``settle_after_start`` (collect, then ``gc.freeze``) where the code has it.

Targets for 100 cards x 10k fills: start <= 2 s, RSS <= 250 MB, history_ratio <= 1.2.
The bulk seeding writes SQL directly: it is a fixture, not application code.

    .venv/bin/python bench/bench_history.py [--cards 100] [--fills 10000] [--minutes 30]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from bench.bench_cycle import SESSION, WAKE, options, seed_cards  # noqa: E402


def seed_fills(db: Path, fills: int, before: datetime) -> None:
    """``fills`` earlier fills per running card, five minutes apart, ending before ``before``."""
    first = int(before.timestamp()) - 300 * (fills + 1)
    conn = sqlite3.connect(db)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM algorithm_instances WHERE status = 'running'")]
        with conn:
            for algo_id in ids:
                rows = []
                for k in range(fills):
                    ts = datetime.fromtimestamp(first + 300 * k, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    price = 100 + (k * 37 + algo_id) % 2000 / 100  # many distinct prices, as in real fills
                    rows.append((algo_id, "buy" if k % 2 == 0 else "sell", 1, price, ts,
                                 f"bench-{algo_id}-{k}-{'b' if k % 2 == 0 else 's'}-0123456789abcdef"))
                conn.executemany("INSERT INTO transactions (algorithm_id, type, shares, price, timestamp, "
                                 "client_order_id) VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()


def rss_mb() -> float:
    """Resident set size of this process now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(root: Path, minutes: int) -> dict:
    """In this (fresh) process: start the engine parts over ``root`` and time what the brief asks."""
    from app.engine.host.service import EngineService
    from app.engine.host.wiring import EngineParts
    from app.engine.marketdata.clock import ManualClock
    from app.engine.system.settings import Settings
    from app.storage.timefmt import from_epoch
    try:
        from app.engine.system.heap import settle_after_start
    except ImportError:  # the code before it existed
        def settle_after_start() -> None:
            pass

    settings = Settings(data_root=root, sim_forced=True)
    open_minute = datetime(2024, 6, 4, 13, 30, tzinfo=timezone.utc)
    clock = ManualClock(open_minute)
    t0 = time.perf_counter()
    parts = EngineParts.build(settings, clock=clock, options=options(0))
    service = EngineService(parts)
    parts.reconcile_at_start()
    service.cards()
    service.available_cash()
    settle_after_start()  # as the orchestrator does once started
    start_s = time.perf_counter() - t0
    durations = []
    try:
        symbols = sorted({i.ticker for i in parts.system.all_instances("running")})
        parts.feed.set_symbols(symbols)
        for ts in parts.calendar.session_minutes(SESSION)[:minutes]:
            minute = from_epoch(ts)
            clock.set(minute + WAKE)
            parts.feed.poll(clock.now())
            t0 = time.perf_counter()
            result = parts.cycle.run_minute(minute)
            service.cards()
            durations.append((time.perf_counter() - t0) * 1000)
            assert not result.faults, result.faults
        rss = rss_mb()
        t0 = time.perf_counter()
        gc.collect()
        gc_ms = (time.perf_counter() - t0) * 1000
    finally:
        parts.close()
    return {"start_s": start_s, "rss_mb": rss, "cycle_median_ms": statistics.median(durations), "gc_full_ms": gc_ms}


def prepare(root: Path, cards: int, fills: int) -> None:
    """Cards (and their history) in a sim data folder under ``root``."""
    from app.engine.system.settings import Settings

    settings = Settings(data_root=root, sim_forced=True)
    open_minute = datetime(2024, 6, 4, 13, 30, tzinfo=timezone.utc)
    seed_cards(settings, cards, open_minute - timedelta(minutes=1))
    if fills:  # the history ends before the last session (Monday): its cards show no markers yet
        seed_fills(settings.data_dir() / "system.db", fills, datetime(2024, 6, 2, 23, 0, tzinfo=timezone.utc))


def restart_copy(root: Path, copy: Path) -> bool:
    """``root`` copied to ``copy`` as a previous run leaves it at stop (with the ledger's checkpoint,
    where the code has one); False when it has none."""
    import shutil

    shutil.copytree(root, copy)
    try:
        from app.engine.portfolio.ledger import CardLedger
        from app.storage.system_store import SystemStore
        ledger = CardLedger()
        if not hasattr(ledger, "checkpoint"):
            return False
    except ImportError:
        return False
    for db in copy.rglob("system.db"):
        with SystemStore(db) as store:
            ledger.checkpoint(store)
    return True


def run_child(root: Path, minutes: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", str(root), "--minutes", str(minutes)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=100)
    parser.add_argument("--fills", type=int, default=10000, help="earlier fills per card")
    parser.add_argument("--minutes", type=int, default=30, help="session minutes to time")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.measure:
        print(json.dumps(measure(args.measure, args.minutes)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_history_") as tmp:
        t0 = time.perf_counter()
        prepare(Path(tmp) / "aged", args.cards, args.fills)
        prepare(Path(tmp) / "fresh", args.cards, 0)
        checkpointed = restart_copy(Path(tmp) / "aged", Path(tmp) / "restart")
        print(f"seeded {args.cards} cards x {args.fills} fills in {time.perf_counter() - t0:.1f} s")
        fresh = run_child(Path(tmp) / "fresh", args.minutes)
        first = run_child(Path(tmp) / "aged", args.minutes)
        aged = run_child(Path(tmp) / "restart", args.minutes) if checkpointed else first
    print(f"first start over the history (no checkpoint yet): {first}")
    print(f"no history: {fresh}")
    print(json.dumps({
        "cards": args.cards,
        "fills_per_card": args.fills,
        "start_s": round(aged["start_s"], 2),
        "rss_mb": round(aged["rss_mb"], 1),
        "cycle_median_ms": round(aged["cycle_median_ms"], 2),
        "gc_full_ms": round(aged["gc_full_ms"], 1),
        "cycle_median_ms_no_history": round(fresh["cycle_median_ms"], 2),
        "history_ratio": round(aged["cycle_median_ms"] / fresh["cycle_median_ms"], 2),
        "start_s_first": round(first["start_s"], 2),
        "rss_mb_no_history": round(fresh["rss_mb"], 1),
        "start_s_no_history": round(fresh["start_s"], 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
