"""Cards on one ticker share the minute's reads: one bar read per ticker and one ledger look per minute,
in the worker process's data context and in the in-process one, and every card still sees the same,
right bars. Reads are counted on real stores (subclasses that count their own calls)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.host.wiring import EngineOptions
from app.engine.minute import cycle as cycle_module
from app.engine.plugins import worker_main
from app.engine.plugins.worker_main import CardSpec, Worker, WorkerConfig
from app.storage.market_store import MarketStore
from app.storage.system_store import SystemStore
from app.storage.timefmt import to_epoch
from tests.engine.crash_child import SimRig, write_algorithm

T0 = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)  # Tuesday, mid-session

RECORDER = '''\
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Recorder"
    description = "Holds; keeps the bars and position it was shown (the test reads them)."

    def run(self, current_time, algo_id):
        self.seen = self.bars_before(20)
        self.held = self.position()
        return ("hold", 0)
'''


class CountingMarketStore(MarketStore):
    """A real MarketStore that counts its ``last_bars`` reads per symbol."""

    reads: list[str] = []

    def last_bars(self, symbol, n, before_ts):  # type: ignore[override]
        CountingMarketStore.reads.append(symbol)
        return super().last_bars(symbol, n, before_ts)


class CountingSystemStore(SystemStore):
    """A real SystemStore that counts the ledger's looks for new transactions."""

    looks = 0

    def transactions_after(self, after_id):  # type: ignore[override]
        CountingSystemStore.looks += 1
        return super().transactions_after(after_id)


@pytest.fixture
def counted(monkeypatch):
    CountingMarketStore.reads = []
    CountingSystemStore.looks = 0
    monkeypatch.setattr(worker_main, "MarketStore", CountingMarketStore)
    monkeypatch.setattr(worker_main, "SystemStore", CountingSystemStore)
    monkeypatch.setattr(cycle_module, "MarketStore", CountingMarketStore)


def _rig(tmp_path: Path, **options) -> tuple[SimRig, dict[str, list[int]]]:
    algos = write_algorithm(tmp_path / "algos", "recorder", RECORDER)
    rig = SimRig(tmp_path / "data", T0, algorithm_dirs=(algos,), options=EngineOptions(time_budget_s=5.0, **options))
    cards = {"AAPL": [rig.add("AAPL", "recorder", 1000) for _ in range(3)], "MSFT": [rig.add("MSFT", "recorder", 1000)]}
    rig.start()
    return rig, cards


def test_worker_reads_each_tickers_bars_once_a_minute_and_every_card_sees_the_same(tmp_path, counted):
    rig, cards = _rig(tmp_path)
    try:
        for i in range(4):  # bars up to the minutes the worker below is asked about
            rig.step(T0 + timedelta(minutes=i))
        paths = rig.parts.paths
        worker = Worker(WorkerConfig(str(paths.stocks_db), str(paths.system_db), None))
        insts = {inst.id: inst for inst in rig.system.all_instances("running")}
        specs = {i: CardSpec(i, "recorder", inst.ticker, "1000", "{}", tuple(str(d) for d in rig.parts.algorithm_dirs))
                 for i, inst in insts.items()}

        def run_all(minute: datetime) -> None:
            for i, spec in specs.items():
                assert worker.handle(("run", i, spec, minute.timestamp(), i))[:2] == ("ok", "hold")

        run_all(T0 + timedelta(minutes=2))
        CountingMarketStore.reads, CountingSystemStore.looks = [], 0
        minute = T0 + timedelta(minutes=3)
        run_all(minute)
        assert sorted(CountingMarketStore.reads) == ["AAPL", "MSFT"]  # once per ticker, for four cards
        assert CountingSystemStore.looks == 1  # the ledger looked once for the whole minute

        seen = [worker.algos[i].seen for i in cards["AAPL"]]
        expected = rig.market.last_bars("AAPL", 20, to_epoch(minute))
        assert len(expected) == 20 and expected[-1].ts == to_epoch(minute) - 60
        assert all(bars == expected for bars in seen)
        assert seen[0] is not seen[1]  # each card has its own list: changing one changes no other
        seen[0].clear()
        assert worker.algos[cards["AAPL"][1]].seen == expected

        rig.step(minute + timedelta(minutes=1))
        run_all(minute + timedelta(minutes=1))  # a new minute reads again, and sees the newer bar
        assert sorted(CountingMarketStore.reads) == ["AAPL", "AAPL", "MSFT", "MSFT"]
        assert worker.algos[cards["AAPL"][0]].seen[-1].ts == to_epoch(minute)
    finally:
        rig.close()


def test_worker_ledger_sees_a_fill_recorded_before_the_next_minute(tmp_path, counted):
    rig, cards = _rig(tmp_path)
    try:
        rig.step(T0)
        paths = rig.parts.paths
        worker = Worker(WorkerConfig(str(paths.stocks_db), str(paths.system_db), None))
        card = cards["AAPL"][0]
        spec = CardSpec(card, "recorder", "AAPL", "1000", "{}", tuple(str(d) for d in rig.parts.algorithm_dirs))
        worker.handle(("run", card, spec, (T0 + timedelta(minutes=1)).timestamp(), card))
        assert worker.algos[card].held == 0
        rig.system.record_buy(card, 3, 100.0, timestamp="2024-06-04T15:01:00Z")  # between two minutes
        worker.handle(("run", card, None, (T0 + timedelta(minutes=2)).timestamp(), card))
        assert worker.algos[card].held == 3
    finally:
        rig.close()


def test_in_process_cards_share_bar_reads_and_trade_as_before(tmp_path, counted):
    rig, cards = _rig(tmp_path, algorithm_workers=0)
    try:
        rig.step(T0)
        CountingMarketStore.reads = []
        minute = T0 + timedelta(minutes=1)
        result = rig.step(minute)
        assert not result.faults and len(result.outcomes) == 4
        assert sorted(CountingMarketStore.reads) == ["AAPL", "MSFT"]
        algos = rig.parts.cycle._algos
        expected = rig.market.last_bars("AAPL", 20, to_epoch(minute))
        assert all(algos[i].seen == expected for i in cards["AAPL"])
    finally:
        rig.close()
