"""Benchmark of the broker-side reconciliation at start, against the fake Alpaca over loopback.

The fake holds ``--orders`` filled orders of one card of this installation, plus ``--foreign``
orders with other client ids; system.db has the card but none of the orders (a power cut that took
every journal row). The figures: listing all of them through alpaca-py's ``get_orders`` in pages
of 500 (``list_s``, ``pages``) and the whole pass that books every fill once (``reconcile_s``,
``fills_booked``). A day of 100 cards trading every 10 minutes is about 4000 orders; the pass
runs at start and once a day, so it lists about one day.

Prints a summary, then as its last line one JSON object.

    .venv/bin/python bench/bench_reconcile.py [--orders 2000] [--foreign 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from app.engine.alpaca.broker import AlpacaBroker  # noqa: E402
from app.engine.marketdata.clock import ManualClock  # noqa: E402
from app.engine.minute.journal import OrderJournal  # noqa: E402
from app.engine.minute.reconcile import BrokerReconciler  # noqa: E402
from app.engine.system.settings import Settings  # noqa: E402
from app.storage.system_store import SystemStore  # noqa: E402
from tests.fakes.alpaca_server import FakeAlpaca, wait_until  # noqa: E402

START = datetime(2024, 6, 4, 13, 30, tzinfo=timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--foreign", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import MarketOrderRequest

    from tests.fakes.fixtures import trading_client

    with tempfile.TemporaryDirectory() as tmp, FakeAlpaca(cash=10**9, fill_delay=0.0) as fake:
        fake.add_asset("AAPL")
        clock = ManualClock(START)
        fake.set_now(clock.now)
        store = SystemStore(Path(tmp) / "system.db", now=clock.now)
        card = store.create_instance("AAPL", "sma_crossover", 10_000.0)
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, trading_url=fake.origin)
        broker = AlpacaBroker.from_settings(settings, timeout_s=10, retry_wait_s=0.05)
        journal = OrderJournal(store, broker, clock.now)
        client = trading_client(fake)
        for i in range(args.orders + args.foreign):
            clock.set(START + timedelta(minutes=i))  # one decision of the card a minute
            side = "buy" if i % 2 == 0 else "sell"
            coid = journal.client_order_id(card, clock.now(), side) if i < args.orders else f"by-hand-{i}"
            order_side = OrderSide(side if i < args.orders else "buy")
            client.submit_order(MarketOrderRequest(symbol="AAPL", qty=1, side=order_side,
                                                   time_in_force=TimeInForce.DAY, client_order_id=coid))
            wait_until(lambda c=coid: fake.order(c)["status"] == "filled", 5)
        fake.clear_log()
        t0 = time.perf_counter()
        listed = broker.orders_since(START - timedelta(minutes=1))
        list_s = time.perf_counter() - t0
        pages = len(fake.requests("/v2/orders", method="GET"))
        t0 = time.perf_counter()
        result = BrokerReconciler(store, broker, journal, clock.now).run(lambda: {})
        reconcile_s = time.perf_counter() - t0
        assert len(listed) == args.orders + args.foreign and len(result.fills) == args.orders
        store.close()
    figures = {"orders_listed": len(listed), "pages": pages, "list_s": round(list_s, 3),
               "fills_booked": len(result.fills), "reconcile_s": round(reconcile_s, 3),
               "per_fill_ms": round(1000 * reconcile_s / max(1, len(result.fills)), 2)}
    print(f"listed {len(listed)} orders in {pages} pages in {list_s:.2f} s; booked {len(result.fills)} "
          f"fills in {reconcile_s:.2f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
