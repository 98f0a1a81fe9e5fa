"""A long backtest's later bars read by a second process: the same columns as the store's, the
same result as one reader, and the replay's own read when the reader fails (real stocks.db files,
real forks, each from a clean single-threaded process as the backtest worker is)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from app.engine.backtest.replay import BacktestRequest, prefetch_plan, run_backtest
from app.engine.system.settings import load_settings
from tests.integration.test_cli_backtest_worker import command

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: forks from it carry no thread and no SQLite connection.
READER = '''
import json, sys
from app.engine.backtest.prefetch import BarReader
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource

path, = sys.argv[1:]
bars = [Bar(1_719_927_000 + 60 * i, 100 + i / 100, 101 + i / 100, 99, 100.5 + i / 1000, 10) for i in range(300)]
with MarketStore(path) as store:
    store.upsert_bars("AAPL", bars, source=BarSource.ALPACA)
bounds = [bars[100].ts, bars[110].ts, bars[150].ts, bars[-1].ts + 1]  # chunks of 10, 40 and 150 bars
out = {}
fits = BarReader(path, "AAPL", bounds, capacity=200)
fits.go()
def plain(chunk):
    return None if chunk is None else [list(column) for column in chunk]


out["fits"] = [plain(fits.next_chunk()) for _ in range(3)]
fits.close()
small = BarReader(path, "AAPL", bounds, capacity=120)  # room for two chunks: the reader says it failed
small.go()
out["small"] = [plain(small.next_chunk()) for _ in range(3)]
idle = BarReader(path, "AAPL", bounds, capacity=200)  # never told to read: closing ends it
idle.close()
with MarketStore(path) as store:
    out["store"] = [store.bar_columns("AAPL", a, b - 1) for a, b in zip(bounds, bounds[1:])]
print(json.dumps(out))
'''


def test_the_reader_hands_over_the_stores_columns_chunk_by_chunk_or_says_it_failed(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", READER, str(tmp_path / "stocks.db")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(done.stdout)
    assert out["fits"] == out["store"] and [len(c[0]) for c in out["store"]] == [10, 40, 150]
    assert out["small"] == out["store"][:2] + [None]


def test_a_long_backtest_read_by_two_processes_gives_the_one_reader_result(tmp_path: Path) -> None:
    """Thirteen months of minutes: the command's worker gets them from a forked reader, chunk by chunk."""
    args = ("sma_crossover", "MSFT", "--start", "2022-06-01", "--end", "2023-06-30")
    done = command(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    there = json.loads(done.stdout)
    settings = load_settings({"AUTOTRADER_DATA_DIR": str(tmp_path / "data")}, dotenv_files=[], force_sim=True)
    request = BacktestRequest("sma_crossover", "MSFT", date(2022, 6, 1), date(2023, 6, 30))
    now = datetime.now(timezone.utc)
    plan = prefetch_plan(request, settings, now)
    assert plan is not None and plan[3] > 100_000 and len(plan[2]) > 3  # long enough for a second reader
    here = run_backtest(request, settings=settings, now=now).to_json()  # one reader, in this process
    assert there["bars"] == here["bars"] > 100_000 and there["trades"]
    assert {k: v for k, v in there.items() if k != "elapsed_s"} == {k: v for k, v in here.items() if k != "elapsed_s"}
    assert prefetch_plan(BacktestRequest("sma_crossover", "MSFT", date(2023, 1, 1), date(2023, 3, 31)),
                         settings, now) is None  # a quarter is read by the replay alone


FALLBACK = '''
import json, shutil, sqlite3, sys
from datetime import date, datetime, timezone
from app.engine.backtest.prefetch import BarReader
from app.engine.backtest.replay import BacktestRequest, prefetch_plan, run_backtest
from app.engine.system.settings import Settings

settings = Settings(data_root=sys.argv[1], sim_forced=True)
request = BacktestRequest("sma_crossover", "MSFT", date(2022, 6, 1), date(2023, 6, 30), params={"fast": 5, "slow": 20})
now = datetime.now(timezone.utc)
alone = run_backtest(request, settings=settings, now=now).to_json()  # also stores the sim bars
path, symbol, bounds, minutes = prefetch_plan(request, settings, now)
# A copy of stocks.db that lost a session's bars since: the reader's chunk from it is refused by count.
changed = path.with_name("changed.db")
shutil.copyfile(path, changed)
with sqlite3.connect(changed) as db:
    db.execute("DELETE FROM bars WHERE ts BETWEEN ? AND ?", (bounds[-2], bounds[-2] + 3600))
results = []
for where, room in ((path, minutes), (path, minutes // 2), (changed, minutes)):  # fine, out of room, changed
    reader = BarReader(where, symbol, bounds, room)
    try:
        results.append(run_backtest(request, settings=settings, now=now, reader=reader).to_json())
    finally:
        reader.close()
# An algorithm that reads whole bars (buy and hold's last_price) gets them from the snapshot.
whole = BacktestRequest("buy_and_hold", "MSFT", date(2022, 6, 1), date(2023, 6, 30))
reader = BarReader(path, symbol, bounds, minutes)
try:
    results.append(run_backtest(whole, settings=settings, now=now, reader=reader).to_json())
finally:
    reader.close()
results.append(run_backtest(whole, settings=settings, now=now).to_json())
print(json.dumps([{k: v for k, v in r.items() if k != "elapsed_s"} for r in [alone, *results]]))
'''


def test_a_failed_reader_leaves_the_replay_to_read_the_rest_itself(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", FALLBACK, str(tmp_path / "data")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True,
                          env={k: v for k, v in os.environ.items() if k != "AUTOTRADER_MODE"})
    alone, helped, failed, changed, whole_helped, whole_alone = json.loads(done.stdout)
    assert alone["trades"] and alone == helped == failed == changed
    assert whole_alone["trades"] and whole_helped == whole_alone
