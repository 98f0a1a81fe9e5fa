"""Benchmark of MarketStore: ingest of a symbol-year of minute bars and "last 200 bars" reads.

Builds N symbols x the 2024 XNYS sessions (390 bars a session, 210 on early closes) of
random-walk bars in a temporary directory. Prints progress, then as its last line one JSON
object: ingest_s_per_symbol_year, last200_median_us, last200_p99_us, numpy_median_us, file_mb.
Targets: ingest <= 0.3 s per symbol-year, last-200 median <= 150 us.

    .venv/bin/python bench/bench_store.py [--symbols 50] [--queries 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import exchange_calendars as xc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from app.storage.market_store import MarketStore  # noqa: E402
from app.storage.records import Bar, BarSource  # noqa: E402


def session_minutes_2024() -> np.ndarray:
    """Epoch seconds of every regular-session minute of 2024 on XNYS, sorted."""
    cal = xc.get_calendar("XNYS")
    sessions = cal.sessions_in_range("2024-01-01", "2024-12-31")
    chunks = []
    for session in sessions:
        open_s = int(cal.session_open(session).timestamp())
        close_s = int(cal.session_close(session).timestamp())
        chunks.append(np.arange(open_s, close_s, 60, dtype=np.int64))
    return np.concatenate(chunks)


def random_walk(ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OHLCV columns (n x 5) of a random walk, consistent: low <= open, close <= high."""
    n = len(ts)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n))) * rng.uniform(1, 10)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    spread = np.abs(rng.normal(0.0, 0.0005, (2, n)))
    high = np.maximum(open_, close) * (1 + spread[0])
    low = np.minimum(open_, close) * (1 - spread[1])
    volume = rng.integers(100, 50_000, n).astype(np.float64)
    return np.column_stack([open_, high, low, close, volume])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50, help="number of symbols (default 50)")
    parser.add_argument("--queries", type=int, default=1000, help="last-200 queries (default 1000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    minutes = session_minutes_2024()
    print(f"2024 XNYS: {len(minutes)} session minutes per symbol-year", flush=True)
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stocks.db"
        ingest_times = []
        with MarketStore(path) as store:
            for i, symbol in enumerate(symbols):
                ohlcv = random_walk(minutes, rng)
                arrays[symbol] = (minutes, ohlcv)
                bars = list(map(Bar._make, zip(minutes.tolist(), *ohlcv[:, :4].T.tolist(),
                                               ohlcv[:, 4].astype(np.int64).tolist())))
                started = time.perf_counter()
                result = store.upsert_bars(symbol, bars, source=BarSource.ALPACA)
                ingest_times.append(time.perf_counter() - started)
                assert result.rejected == 0, result.rejected_reasons
                if (i + 1) % 10 == 0 or i + 1 == len(symbols):
                    print(f"ingested {i + 1}/{len(symbols)} symbols, last {ingest_times[-1]:.3f} s",
                          flush=True)
        # Closing folds the WAL back in, so the file size is the real footprint.
        file_mb = path.stat().st_size / 1e6
        print(f"file: {file_mb:.1f} MB", flush=True)

        first, last = int(minutes[0]), int(minutes[-1]) + 60
        picks = [(symbols[int(rng.integers(len(symbols)))], int(rng.integers(first, last)))
                 for _ in range(args.queries)]
        with MarketStore(path) as store:
            for symbol, instant in picks[:50]:  # warm the page cache and statement cache
                store.last_bars(symbol, 200, instant)
            store_ns = []
            for symbol, instant in picks:
                started = time.perf_counter_ns()
                got = store.last_bars(symbol, 200, instant)
                store_ns.append(time.perf_counter_ns() - started)
                assert not got or got[-1].ts < instant
        numpy_ns = []
        for symbol, instant in picks:
            ts, ohlcv = arrays[symbol]
            started = time.perf_counter_ns()
            end = int(np.searchsorted(ts, instant, side="left"))
            window = ohlcv[max(0, end - 200):end]
            numpy_ns.append(time.perf_counter_ns() - started)
            assert len(window) <= 200
        print(f"last_bars(200): {len(store_ns)} queries", flush=True)

    figures = {
        "ingest_s_per_symbol_year": round(statistics.fmean(ingest_times), 4),
        "last200_median_us": round(statistics.median(store_ns) / 1000, 1),
        "last200_p99_us": round(percentile(store_ns, 0.99) / 1000, 1),
        "numpy_median_us": round(statistics.median(numpy_ns) / 1000, 2),
        "file_mb": round(file_mb, 1),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
