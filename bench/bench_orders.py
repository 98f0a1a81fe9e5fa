"""Benchmark of a minute's order work against the fake Alpaca with an injected network round trip.

The real alpaca-py TradingClient talks to the fake over loopback; the fake adds ``--rtt-ms`` to
every REST answer and fills an order ``--fill-delay`` after it arrives. Measured on the engine's
own order path (:meth:`OrderJournal.place_many`, then one :meth:`OrderJournal.settle` with the
engine's 5 s wait), as ``TradingCycle.run_minute`` calls it:

* ``minute_order_work_s``: ``--orders`` cards on as many symbols each buy one share: journaled,
  sent, settled until every fill is booked (target <= 2 s at 50 ms).
* ``stuck_wait_s``: ``--stuck`` orders the fake keeps open: the minute's whole order work, which
  the one bounded wait caps at about 5 s however many they are (target <= 6 s).

``--sequential`` also measures the code before this change, as the reference: each order
journaled and sent one after another, then up to 5 s waited for each open order in turn
(``sequential_*``; the stuck case then takes about 5 s per order).

Prints a summary, then as its last line one JSON object.

    .venv/bin/python bench/bench_orders.py [--orders 100] [--stuck 12] [--rtt-ms 50] [--sequential]
"""

from __future__ import annotations

import argparse
import json
import logging
import string
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from app.engine.alpaca.broker import AlpacaBroker  # noqa: E402
from app.engine.minute.journal import OrderJournal  # noqa: E402
from app.engine.minute.netting import CardOrder  # noqa: E402
from app.engine.system.settings import Settings  # noqa: E402
from app.storage.system_store import SystemStore  # noqa: E402
from tests.fakes.alpaca_server import FakeAlpaca, _xnys  # noqa: E402

MINUTE = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)
WAIT_S = 5.0  # the engine's fill wait for Alpaca (EngineOptions.fill_wait_s)


def symbols(count: int, offset: int) -> list[str]:
    """``count`` made-up three-letter tickers, distinct per ``offset`` block."""
    names = ["Q" + "".join(p) for p in product(string.ascii_uppercase, repeat=2)]
    return names[offset:offset + count]


def cards(store: SystemStore, fake: FakeAlpaca, tickers: list[str]) -> list[CardOrder]:
    """One card per ticker, each buying one share this minute."""
    orders = []
    for ticker in tickers:
        fake.add_asset(ticker)
        fake.set_price(ticker, "10")
        orders.append(CardOrder(store.create_instance(ticker, "sma_crossover", 1_000.0), ticker, "buy", 1))
    return orders


def concurrent(journal: OrderJournal, orders: list[CardOrder]) -> tuple[float, int]:
    """This code: one journal write, concurrent sends, one bounded wait. (seconds, fills booked)"""
    t0 = time.perf_counter()
    problems = journal.place_many(orders, MINUTE, {o.symbol: Decimal(10) for o in orders})
    assert not any(problems.values()), problems
    fills = journal.settle(WAIT_S)
    return time.perf_counter() - t0, len(fills)


def sequential(journal: OrderJournal, broker: AlpacaBroker, orders: list[CardOrder]) -> tuple[float, int]:
    """The code before: place one order after another, then wait up to 5 s for each open one in turn."""
    t0 = time.perf_counter()
    fills = 0
    for o in orders:
        _, problem = journal.place(o.card, o.symbol, o.side, o.shares, MINUTE)
        assert problem is None, problem
    fills += len(journal.settle(0))
    for row in journal.open_orders():
        state = broker.wait_for_final(row.client_order_id, WAIT_S)
        fills += journal.apply(state) is not None
    return time.perf_counter() - t0, fills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--stuck", type=int, default=12)
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--fill-delay", type=float, default=0.1)
    parser.add_argument("--sequential", action="store_true", help="also time the code before (slow)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    import alpaca.trading.requests  # noqa: F401 - imported by the first order of a run; not a per-minute cost
    figures: dict[str, object] = {"orders": args.orders, "rtt_ms": args.rtt_ms}
    with tempfile.TemporaryDirectory() as tmp, FakeAlpaca(cash=10**9, fill_delay=args.fill_delay) as fake:
        fake.set_now(lambda: MINUTE + timedelta(seconds=3))
        store = SystemStore(Path(tmp) / "system.db", now=lambda: MINUTE + timedelta(seconds=3))
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, trading_url=fake.origin)
        broker = AlpacaBroker.from_settings(settings, timeout_s=10, retry_wait_s=0.05)
        journal = OrderJournal(store, broker, lambda: MINUTE + timedelta(seconds=3), stale_after=None)
        _xnys()  # the fake's calendar, built by its first order: not part of any minute
        broker.account_cash()
        fake.latency = args.rtt_ms / 1000
        runs = [("", concurrent)]
        if args.sequential:
            runs.append(("sequential_", lambda j, o: sequential(j, broker, o)))
        offset = 0
        for prefix, run in runs:
            orders = cards(store, fake, symbols(args.orders, offset))
            offset += args.orders
            seconds, fills = run(journal, orders)
            assert fills == args.orders, f"{prefix}: {fills} of {args.orders} fills booked"
            figures[f"{prefix}minute_order_work_s"] = round(seconds, 3)
            orders = cards(store, fake, symbols(args.stuck, offset))
            offset += args.stuck
            fake.faults.status_path("new", final_status=None, times=args.stuck)  # they stay open
            seconds, fills = run(journal, orders)
            assert fills == 0 and len(journal.open_orders()) == args.stuck
            figures[f"{prefix}stuck_orders"] = args.stuck
            figures[f"{prefix}stuck_wait_s"] = round(seconds, 3)
            fake.faults.reset()
            fake.expire_open_orders()
            journal.settle(0)
        journal.close()
        store.close()
    figures["concurrency"] = broker.concurrency
    for key, value in figures.items():
        print(f"{key:>32}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
