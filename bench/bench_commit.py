"""Benchmark of one journal-row commit in system.db with ``synchronous=FULL`` (what the engine uses) against
``synchronous=NORMAL`` (what it used before), in the same run on the same disk.

Each round writes one pending order with ``SystemStore.journal_order`` (one write transaction, as the
engine does before every order) into a FULL store and into a NORMAL store, alternating so both see the
same disk weather. Prints progress, then as its last line one JSON object: commit_full_median_us,
commit_full_p99_us, commit_normal_median_us, commit_normal_p99_us, ratio (full / normal medians),
extra_ms_per_100_orders (what FULL adds to a minute with 100 orders), rounds and the folder used.

The folder must be on the disk whose cost you want (the default is a temporary folder beside this
checkout, not /tmp, which may be a RAM disk).

    .venv/bin/python bench/bench_commit.py [--rounds 300] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from app.storage.system_store import SystemStore  # noqa: E402
from app.storage.timefmt import utc_text  # noqa: E402


class NormalSystemStore(SystemStore):
    """system.db as it was opened before: WAL with ``synchronous=NORMAL``."""

    SYNCHRONOUS = "NORMAL"


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    """Run the rounds and print the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="where the two databases are written")
    args = parser.parse_args()
    base = args.dir or Path(__file__).resolve().parent.parent
    base.mkdir(parents=True, exist_ok=True)
    start = datetime(2024, 6, 3, 13, 30, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory(prefix="bench-commit-", dir=base) as folder:
        full = SystemStore(Path(folder) / "full.db")
        normal = NormalSystemStore(Path(folder) / "normal.db")
        assert full.connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert normal.connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        ids = {id(store): store.create_instance("AAPL", "buy_and_hold", 10000.0) for store in (full, normal)}
        timings: dict[str, list[float]] = {"full": [], "normal": []}
        for i in range(args.rounds):
            at = utc_text(start + timedelta(minutes=i))
            for name, store in (("full", full), ("normal", normal)) if i % 2 == 0 else \
                    (("normal", normal), ("full", full)):
                t0 = time.perf_counter()
                store.journal_order(f"bench-{name}-{i}", ids[id(store)], "AAPL", "buy", 1, at)
                timings[name].append((time.perf_counter() - t0) * 1e6)
            if (i + 1) % 100 == 0:
                print(f"{i + 1} rounds: full median {statistics.median(timings['full']):.0f} us, "
                      f"normal median {statistics.median(timings['normal']):.0f} us", flush=True)
        full.close()
        normal.close()
    full_median = statistics.median(timings["full"])
    normal_median = statistics.median(timings["normal"])
    print(json.dumps({
        "commit_full_median_us": round(full_median, 1),
        "commit_full_p99_us": round(_p99(timings["full"]), 1),
        "commit_normal_median_us": round(normal_median, 1),
        "commit_normal_p99_us": round(_p99(timings["normal"]), 1),
        "ratio": round(full_median / normal_median, 2),
        "extra_ms_per_100_orders": round((full_median - normal_median) * 100 / 1000, 1),
        "rounds": args.rounds,
        "dir": str(base),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
