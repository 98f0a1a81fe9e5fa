"""Benchmark of AlpacaHistory.backfill: one symbol-year of minute bars through real alpaca-py.

Starts the fake Alpaca on 127.0.0.1, loads one symbol with every regular-session minute of
2024 (390 bars a session, 210 on early closes: 97,740 bars), then backfills it into a fresh
stocks.db in a temporary directory through AlpacaHistory (10,000 bars a page). The time covers
HTTP, JSON, parsing, the calendar filter and SQLite; the fake server's own work is included
too, so the figure is a floor for the client side. Prints progress, then as its last line one
JSON object: bars, seconds, bars_per_s, requests. Target >= 50,000 bars/s.

    .venv/bin/python bench/bench_backfill.py [--symbol AAPL]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from app.engine.alpaca.history import AlpacaHistory  # noqa: E402
from app.engine.marketdata.calendar import MarketCalendar  # noqa: E402
from app.engine.system.settings import Settings  # noqa: E402
from app.storage.market_store import MarketStore  # noqa: E402
from tests.fakes.alpaca_server import FakeAlpaca  # noqa: E402


def year_of_bars(calendar: MarketCalendar) -> list[tuple]:
    """A random-walk-ish, always valid bar for every 2024 session minute."""
    rows = []
    for session in calendar.sessions_between(date(2024, 1, 1), date(2024, 12, 31)):
        for ts in calendar.session_minutes(session):
            p = 100.0 + 10.0 * math.sin(ts / 7919.0)
            rows.append((ts, round(p, 2), round(p + 0.3, 2), round(p - 0.3, 2), round(p + 0.1, 2), 100 + ts % 997))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbol", default="AAPL")
    args = parser.parse_args(argv)
    calendar = MarketCalendar()
    rows = year_of_bars(calendar)
    with FakeAlpaca() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.add_bars(args.symbol, rows)
        print(f"fake Alpaca at {fake.origin} holds {len(rows)} {args.symbol} bars", file=sys.stderr)
        settings = Settings(api_key=fake.key, secret=fake.secret, data_url=fake.origin,
                            trading_url=fake.origin, data_root=Path(tmp))
        with MarketStore(Path(tmp) / "stocks.db", minute_filter=calendar.is_session_minute) as store:
            history = AlpacaHistory.from_settings(settings, store, calendar)

            def progress(done: int, total: int) -> None:
                print(f"  {done}/{total} sessions", file=sys.stderr, flush=True)

            started = time.perf_counter()
            summary = history.backfill(args.symbol, date(2024, 1, 1), date(2024, 12, 31), progress=progress)
            seconds = time.perf_counter() - started
            stored = store.bar_count(args.symbol)
        if stored != len(rows) or summary.bars_stored != len(rows):
            print(f"FAILED: stored {stored} of {len(rows)} bars", file=sys.stderr)
            return 1
        requests = fake.count("/v2/stocks/bars")
    print(json.dumps({"bars": stored, "seconds": round(seconds, 3), "bars_per_s": round(stored / seconds),
                      "requests": requests}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
