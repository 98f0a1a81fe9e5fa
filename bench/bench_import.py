"""Memory and speed of ``autotrader import-bars`` on a large real-looking file.

Writes a CSV in alpaca-py's bar-set layout (``symbol,timestamp,open,high,low,close,volume,
trade_count,vwap``, ``+00:00`` offsets, float volumes) of about ``--mb`` megabytes into a
temporary folder, imports it with the real command in a child process (sim mode, its own data
folder), and reports the child's peak resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``).

    .venv/bin/python bench/bench_import.py [--mb 200]

Prints progress, then one JSON object on its last line:
``{"file_mb", "rows", "peak_rss_mb", "rows_per_s", "seconds", "stored_bars"}``.
The target (issue 16): a 200 MB file under 250 MB RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engine.marketdata.calendar import MarketCalendar  # noqa: E402

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "QQQ", "AMZN")
BYTES_PER_ROW = 78  # about, for the layout written below


def write_file(path: Path, target_mb: float) -> int:
    """Write about ``target_mb`` MB of minute bars; returns the row count."""
    calendar = MarketCalendar()
    sessions = calendar.sessions_between(date(2015, 1, 2), date(2025, 12, 31))
    rows_wanted = int(target_mb * 1e6 / BYTES_PER_ROW)
    per_symbol = rows_wanted // len(SYMBOLS)
    rng = random.Random(7)
    rows = 0
    with path.open("w", newline="") as out:
        out.write("symbol,timestamp,open,high,low,close,volume,trade_count,vwap\n")
        for symbol in SYMBOLS:
            price = rng.uniform(50, 400)
            written = 0
            for day in sessions:
                if written >= per_symbol:
                    break
                for ts in calendar.session_minutes(day):
                    o = price
                    price = max(1.0, price * (1 + rng.gauss(0, 0.0008)))
                    c = price
                    h, low = max(o, c) * 1.0004, min(o, c) * 0.9996
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(ts))
                    out.write(f"{symbol},{stamp},{o:.2f},{h:.2f},{low:.2f},{c:.2f},"
                              f"{float(rng.randint(100, 90_000))},{rng.randint(1, 900)},{(o + c) / 2:.4f}\n")
                    written += 1
            rows += written
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200.0, help="size of the generated file (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        folder = Path(tmp)
        csv_path = folder / "bars.csv"
        started = time.perf_counter()
        rows = write_file(csv_path, args.mb)
        file_mb = csv_path.stat().st_size / 1e6
        print(f"wrote {rows:,} rows, {file_mb:.1f} MB in {time.perf_counter() - started:.1f} s", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
        env["AUTOTRADER_DATA_DIR"] = str(folder / "data")
        env["SQLITE_TMPDIR"] = str(folder)  # the staging table spills here, not to a shared /var/tmp
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "app", "import-bars", str(csv_path)], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        print(done.stdout.strip(), flush=True)
        if done.returncode != 0:
            print(done.stderr.strip(), file=sys.stderr)
            raise SystemExit(f"import-bars failed with exit code {done.returncode}")
        with sqlite3.connect(folder / "data" / "sim" / "stocks.db") as conn:
            stored = conn.execute("SELECT COUNT(*) FROM bars").fetchone()[0]
        print(json.dumps({"file_mb": round(file_mb, 1), "rows": rows, "peak_rss_mb": round(peak_mb, 1),
                          "rows_per_s": round(rows / seconds), "seconds": round(seconds, 1),
                          "stored_bars": stored}))


if __name__ == "__main__":
    main()
