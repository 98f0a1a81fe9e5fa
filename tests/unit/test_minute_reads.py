"""MinuteBars over a real MarketStore: one store read per (symbol, cut-off) a minute, also when the
in-process runner's threads ask at the same moment; a larger n reads again; a new minute reads afresh."""

from __future__ import annotations

import threading

from app.engine.marketdata.minute_reads import MinuteBars
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource

T = 1_717_513_200  # 2024-06-04 15:00 UTC


def _store(tmp_path) -> MarketStore:
    store = MarketStore(tmp_path / "stocks.db", shared=True)
    store.upsert_many({"AAPL": [Bar(T + 60 * i, 100 + i, 101 + i, 99 + i, 100 + i, 10) for i in range(60)]},
                      source=BarSource.SIMULATED)
    return store


def test_threads_asking_together_share_one_read(tmp_path):
    store = _store(tmp_path)
    reads = []

    def read(symbol, n, before):
        reads.append((symbol, n, before))
        return store.last_bars(symbol, n, before)

    bars = MinuteBars(read)
    minute = T + 60 * 50
    bars.begin_minute(minute)
    start = threading.Barrier(8)
    seen: list[list[Bar]] = []

    def card() -> None:
        start.wait()
        seen.append(bars.last_bars("AAPL", 20, minute))

    threads = [threading.Thread(target=card) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reads == [("AAPL", 20, minute)]
    expected = store.last_bars("AAPL", 20, minute)
    assert len(seen) == 8 and all(s == expected for s in seen)
    assert len({id(s) for s in seen}) == 8  # every caller its own list

    assert bars.last_bars("AAPL", 5, minute) == expected[-5:] and len(reads) == 1  # a smaller n: no read
    assert bars.last_bars("AAPL", 30, minute) == store.last_bars("AAPL", 30, minute) and len(reads) == 2
    assert bars.last_bars("AAPL", 1, T + 60 * 70) and len(reads) == 3  # past the minute: read through
    bars.begin_minute(minute + 60)
    assert bars.last_bars("AAPL", 20, minute + 60)[-1].ts == minute and len(reads) == 4
    bars.end_minute()
    bars.last_bars("AAPL", 20, minute + 60)
    bars.last_bars("AAPL", 20, minute + 60)
    assert len(reads) == 6  # outside a minute every call reads
    store.close()
