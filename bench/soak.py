"""Soak run: the real kiosk process, offscreen, on the simulated market for N accelerated sessions.

Starts ``python -m app run --sim --speed S --windowed`` under ``QT_QPA_PLATFORM=offscreen`` with its
own temporary data folder (``AUTOTRADER_DATA_DIR``, no ``ALPACA_*`` variables), after creating K
cards across 10 tickers with ``python -m app add ... --sim``. Everything is observed from outside:
system.db (``last_cycle`` with the engine's running totals, the orders journal, transactions,
instances), the logs folder and ``/proc/<pid>`` (VmRSS, Threads, fd). When N sessions have been
cycled it sends SIGTERM and prints one JSON object on its last line:

sessions, instances, cycles_scheduled (calendar session minutes from the first to the last cycled
minute), cycles_run, cycles_late (> 1 s of simulated time after the scheduled instant), orders,
fills, refused, faults, errors_logged, rss_mb_start (after the first cycle), rss_mb_mid, rss_mb_end,
fds_start, fds_end, threads_start, threads_end, log_mb — plus a few more (missed minutes, RSS at the
end of session 1, duplicate fills, integrity, exit code, real seconds).

    .venv/bin/python bench/soak.py --sessions 30 --instances 20 --speed 600
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # run from a checkout

from app.engine.system.maintenance import read_last_cycle  # noqa: E402
from app.engine.marketdata.calendar import MarketCalendar  # noqa: E402
from app.storage.system_store import SystemStore  # noqa: E402
from app.storage.timefmt import parse_utc_text  # noqa: E402

TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD", "SPY", "QQQ")
# Cycled over the cards: shipped algorithms with parameters that make them trade within a session.
ALGORITHMS: tuple[tuple[str, dict[str, str]], ...] = (
    ("sma_crossover", {"fast": "3", "slow": "8"}),
    ("buy_and_hold", {}),
    ("lot_exits", {"lookback": "10", "entry_drop_pct": "0.2", "take_profit_pct": "0.3", "stop_loss_pct": "0.3"}),
    ("sma_crossover", {"fast": "5", "slow": "20"}),
)
CAPITAL = "4000"  # 20 cards fit in the simulator's $100,000
POLL_S = 0.01
STALL_S = 120.0  # no new cycle for this long (real time): the run is stuck
ALPACA_VARS = ("ALPACA_API_KEY", "ALPACA_SECRET", "ALPACA_PAPER", "ALPACA_FEED", "ALPACA_TRADING_URL",
               "ALPACA_DATA_URL", "ALPACA_STREAM_URL", "AUTOTRADER_ALGORITHM_DIRS")


class SoakError(RuntimeError):
    """The soak could not run (the app did not start, stalled, or a command failed); the text says why."""


def app_env(data_root: Path, **extra: str) -> dict[str, str]:
    """Environment for an app child: its own data folder, offscreen Qt and no Alpaca settings (sim)."""
    env = {k: v for k, v in os.environ.items() if k not in ALPACA_VARS}
    env["AUTOTRADER_DATA_DIR"] = str(data_root)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def app_command(*args: str) -> list[str]:
    """``python -m app ARGS`` with this interpreter."""
    return [sys.executable, "-m", "app", *args]


# Every `add` of a run in one child interpreter, each through the command line's own main(): the
# cards are made exactly as `autotrader add` makes them, without paying Python's, Qt's and numpy's
# start-up once per card (20 cards: ~20 s of a 2-core machine).
_ADD_MANY = """\
import json, sys
from app.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    sys.stdout.flush()
    if code:
        sys.exit(code)
"""


def instance_args(count: int, extra: tuple[str, ...] = ("--sim",)) -> list[list[str]]:
    """The ``add`` arguments of ``count`` cards cycled over TICKERS and ALGORITHMS."""
    argvs = []
    for i in range(count):
        algorithm, params = ALGORITHMS[i % len(ALGORITHMS)]
        args = ["add", TICKERS[i % len(TICKERS)], algorithm, CAPITAL, *extra]
        for name, value in params.items():
            args += ["--param", f"{name}={value}"]
        argvs.append(args)
    return argvs


def add_cards(data_root: Path, argvs: list[list[str]], *, env: dict[str, str] | None = None) -> list[int]:
    """Run ``autotrader add ARGS`` for every ARGS of ``argvs`` (in order, one child process); their ids."""
    env = env or app_env(data_root)
    done = subprocess.run([sys.executable, "-c", _ADD_MANY, json.dumps(argvs)], capture_output=True, text=True,
                          env=env, cwd=data_root, timeout=60 + 10 * len(argvs))
    ids = done.stdout.split()
    if done.returncode != 0 or len(ids) != len(argvs):
        raise SoakError(f"autotrader add failed after {len(ids)} of {len(argvs)} cards: "
                        f"{done.stderr.strip()[-2000:]}")
    return [int(i) for i in ids]


def add_instances(data_root: Path, count: int, *, env: dict[str, str] | None = None,
                  extra: tuple[str, ...] = ("--sim",)) -> list[int]:
    """Create ``count`` cards over TICKERS (``autotrader add``, see add_cards); returns their ids."""
    return add_cards(data_root, instance_args(count, extra), env=env)


@dataclass(frozen=True)
class ProcSample:
    """Resident memory, open descriptors and threads of a process, from /proc."""

    rss_mb: float
    fds: int
    threads: int


def sample(pid: int) -> ProcSample:
    """Read /proc/<pid>/status (VmRSS, Threads) and count /proc/<pid>/fd."""
    rss_kb = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return ProcSample(round(rss_kb / 1024, 1), len(os.listdir(f"/proc/{pid}/fd")), threads)


def log_errors(log_dir: Path) -> tuple[int, list[str]]:
    """ERROR/CRITICAL lines in the log files (rotated ones included) and the first few of them."""
    count, first = 0, []
    for path in sorted(log_dir.glob("*.log*")):
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if " ERROR " in line or " CRITICAL " in line:
                    count += 1
                    if len(first) < 5:
                        first.append(line.strip()[:300])
    return count, first


def folder_mb(folder: Path) -> float:
    """Total size of the files in ``folder`` in MB."""
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 3)


@dataclass
class Watch:
    """What the poller saw of the running app."""

    first_minute: datetime | None = None
    last: dict | None = None
    days: list[date] = field(default_factory=list)
    samples: dict[str, ProcSample] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # minutes the engine passed over (seen between two polls)
    per_session: list[ProcSample] = field(default_factory=list)  # at the end of each session
    durations: list[float] = field(default_factory=list)  # cycle times seen this session (ms)
    cycle_ms_by_session: list[float] = field(default_factory=list)  # median of the cycles seen per session


def watch_sessions(proc: subprocess.Popen, store: SystemStore, calendar: MarketCalendar, sessions: int,
                   say: Callable[[str], None], stall_s: float = STALL_S) -> Watch:
    """Poll last_cycle until ``sessions`` sessions have been cycled to their last minute, sampling
    /proc after the first cycle, at the end of session 1, of session N/2 and of session N."""
    watch = Watch()
    mid = max(1, sessions // 2)
    seen_at = time.monotonic()
    seen_count = 0
    while True:
        if proc.poll() is not None:
            raise SoakError(f"the app exited by itself with code {proc.returncode}")
        cycle = read_last_cycle(store)
        if cycle and cycle.get("cycles_run", 0) != seen_count:
            minute = parse_utc_text(cycle["minute"])
            if watch.last is not None and cycle["cycles_run"] == seen_count + 1:
                # One cycle since the last poll: every session minute in between was skipped.
                ts = int(parse_utc_text(watch.last["minute"]).timestamp()) + 60
                while ts < int(minute.timestamp()):
                    if calendar.is_session_minute(ts):
                        watch.skipped.append(datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%MZ"))
                    ts += 60
            seen_count, seen_at = cycle["cycles_run"], time.monotonic()
            if watch.first_minute is None:
                # Normally the poller sees cycle 1 itself; otherwise count back along the calendar.
                back = cycle["cycles_run"] - 1
                first = int(minute.timestamp())
                while back > 0:
                    first -= 60
                    if calendar.is_session_minute(first):
                        back -= 1
                watch.first_minute = datetime.fromtimestamp(first, timezone.utc)
                watch.samples["start"] = sample(proc.pid)
            watch.last = cycle
            watch.durations.append(cycle.get("duration_ms", 0.0))
            day = minute.date()
            if not watch.days or watch.days[-1] != day:
                watch.days.append(day)
            last_minute = calendar.session_close(day) - timedelta(minutes=1)
            done = len(watch.days) - (0 if minute >= last_minute else 1)
            while len(watch.per_session) < done:
                watch.per_session.append(sample(proc.pid))
                # Flat per-minute cost over the sessions is the evidence that work does not grow with history.
                watch.cycle_ms_by_session.append(round(statistics.median(watch.durations or [0.0]), 1))
                watch.durations.clear()
                say(f"session {len(watch.per_session)} done ({day}): {cycle['cycles_run']} cycles, "
                    f"{cycle['late_1s']} late, {len(watch.skipped)} skipped, {watch.per_session[-1]}")
            for mark, at in (("session1", 1), ("mid", mid), ("end", sessions)):
                if done >= at and mark not in watch.samples:
                    watch.samples[mark] = watch.per_session[at - 1]
            if done >= sessions:
                return watch
        elif time.monotonic() - seen_at > stall_s:
            raise SoakError(f"no new cycle for {stall_s:.0f} s (last: {cycle})")
        time.sleep(POLL_S)


def stop_process(proc: subprocess.Popen, timeout_s: float = 30.0) -> int:
    """SIGTERM, wait, SIGKILL if it does not end; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def books(system_db: Path) -> dict:
    """Orders, fills, faults and consistency figures from system.db after the run."""
    with SystemStore(system_db) as store:
        instances = store.all_instances()
        orders = [o for inst in instances for o in store.orders_for(inst.id)]
        txs = store.all_transactions()
        ok, detail = store.integrity_check()
        coids = Counter(tx.client_order_id for tx in txs)
        return {
            "orders": len(orders),
            "fills": len(txs),
            "faults": sum(1 for inst in instances if inst.faulted_reason),
            "fills_doubled": sum(1 for n in coids.values() if n > 1),
            "open_orders": len(store.open_orders()),
            "integrity": "ok" if ok else detail,
        }


def run_soak(sessions: int, instances: int, speed: float, data_root: Path,
             say: Callable[[str], None] = print, *, window: str = "--windowed") -> dict:
    """Create the cards, run the app for ``sessions`` sessions, stop it and return the figures."""
    started = time.monotonic()
    data_root.mkdir(parents=True, exist_ok=True)
    env = app_env(data_root)
    add_instances(data_root, instances, env=env)
    say(f"{instances} cards created in {time.monotonic() - started:.1f} s; starting the app at speed {speed:g}")
    sim = data_root / "sim"
    calendar = MarketCalendar()
    with (data_root / "app-stdout.txt").open("w") as out, (data_root / "app-stderr.txt").open("w") as err:
        proc = subprocess.Popen(app_command("run", "--sim", "--speed", f"{speed:g}", window),
                                stdout=out, stderr=err, env=env, cwd=data_root)
        try:
            with SystemStore(sim / "system.db") as store:
                watch = watch_sessions(proc, store, calendar, sessions, say)
        finally:
            exit_code = stop_process(proc)
    with SystemStore(sim / "system.db") as store:
        final = read_last_cycle(store) or {}
    errors, first_errors = log_errors(sim / "logs")
    stderr_tracebacks = (data_root / "app-stderr.txt").read_text(errors="replace").count("Traceback")
    s = watch.samples
    result = {
        "sessions": sessions,
        "instances": instances,
        "cycles_scheduled": calendar.open_minutes_between(watch.first_minute,
                                                          parse_utc_text(final["minute"]) + timedelta(minutes=1)),
        "cycles_run": final.get("cycles_run", 0),
        "cycles_late": final.get("late_1s", 0),
        "late_max_s": final.get("late_max_s"),  # simulated seconds; ÷ speed for real time
        **{k: v for k, v in books(sim / "system.db").items() if k in ("orders", "fills", "faults")},
        "refused": final.get("refused", 0),
        "errors_logged": errors,
        "rss_mb_start": s["start"].rss_mb,
        "rss_mb_mid": s["mid"].rss_mb,
        "rss_mb_end": s["end"].rss_mb,
        "fds_start": s["start"].fds,
        "fds_end": s["end"].fds,
        "threads_start": s["start"].threads,
        "threads_end": s["end"].threads,
        "log_mb": folder_mb(sim / "logs"),
        # Beyond the list: evidence for the criteria.
        "rss_mb_session1": s["session1"].rss_mb,
        "fds_session1": s["session1"].fds,
        "threads_session1": s["session1"].threads,
        "rss_mb_by_session": [x.rss_mb for x in watch.per_session],
        "cycle_ms_by_session": watch.cycle_ms_by_session,
        "rss_growth_pct": round(100 * (s["end"].rss_mb - s["session1"].rss_mb) / s["session1"].rss_mb, 1),
        "missed": final.get("missed", 0),
        "skipped_minutes": watch.skipped[:10],
        "session_days": [watch.days[0].isoformat(), watch.days[-1].isoformat()],
        "speed": speed,
        "window": window.lstrip("-"),
        "exit_code": exit_code,
        "stderr_tracebacks": stderr_tracebacks,
        "first_errors": first_errors,
        "real_s": round(time.monotonic() - started, 1),
    }
    result.update({k: v for k, v in books(sim / "system.db").items() if k not in result})
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the soak, print the JSON on the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--headless", action="store_true", help="no kiosk window (default: windowed, offscreen)")
    parser.add_argument("--data", type=Path, default=None, help="data folder to use (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.instances < 1 or not args.speed > 0:
        parser.error("--sessions and --instances must be at least 1 and --speed positive")
    window = "--headless" if args.headless else "--windowed"
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731 - stdout keeps the JSON last
    if args.data:
        result = run_soak(args.sessions, args.instances, args.speed, args.data, say, window=window)
    else:
        with tempfile.TemporaryDirectory(prefix="autotrader-soak-") as folder:
            result = run_soak(args.sessions, args.instances, args.speed, Path(folder), say, window=window)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
