"""Two adds racing for the same cash: the check and the insert are one write transaction."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from app.engine.host.client import ServiceError
from app.storage.system_store import SystemStore
from tests.engine.crash_child import SimRig

START = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)


def test_two_racing_adds_cannot_allocate_more_than_the_account_holds(tmp_path: Path):
    SimRig(tmp_path, START).parts.close()  # create the folder (sim account: $100,000)
    a_checking = threading.Event()
    results: dict[str, object] = {}

    def add(name: str, capital: str, slow: bool) -> None:
        rig = SimRig(tmp_path, START)
        try:
            if slow:
                # A pauses inside every look at the cards' cash: B runs its whole add meanwhile.
                real = rig.parts.cycle.holdings

                def holdings(instances):
                    found = real(instances)
                    a_checking.set()
                    time.sleep(0.3)
                    return found
                rig.parts.cycle.holdings = holdings
            else:
                assert a_checking.wait(10)
            try:
                results[name] = rig.add("AAPL", "buy_and_hold", capital)
            except ServiceError as exc:
                results[name] = exc
        finally:
            rig.parts.close()

    threads = [threading.Thread(target=add, args=("a", "60000", True)),
               threading.Thread(target=add, args=("b", "60000", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(results) == {"a", "b"}
    created = [r for r in results.values() if isinstance(r, int)]
    refused = [r for r in results.values() if isinstance(r, ServiceError)]
    assert len(created) == 1 and len(refused) == 1, results
    assert "more than the $40,000.00 available" in str(refused[0])
    with SystemStore(tmp_path / "sim" / "system.db") as store:
        assert [i.initial_capital for i in store.all_instances()] == [60000.0]
