"""A clock behind what the data folder has recorded (the newest bar, the last cycle): the kiosk starts,
says it is waiting for the clock, trades nothing until time moves past, and cards/status never raise.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.marketdata.clock import SimClock
from app.engine.host.thread import EngineHost
from app.engine.system.maintenance import LAST_CYCLE_KEY, recorded_until
from app.engine.system.settings import Settings
from app.storage.timefmt import from_epoch, utc_text
from tests.engine.crash_child import FLIPPER_SOURCE, SimRig, write_algorithm


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture
def algos(tmp_path: Path) -> Path:
    return write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)


def test_cards_and_status_do_not_raise_on_a_clock_before_the_stored_bars(tmp_path, algos):
    rig = SimRig(tmp_path, utc(2024, 6, 5, 15, 0), algorithm_dirs=(algos,))
    try:
        card = rig.add("AAPL", "flipper", 5_000)
        newest = rig.market.latest_bar("AAPL")
        assert newest is not None and from_epoch(newest.ts) > utc(2024, 6, 5, 14, 0)
        rig.clock.set(utc(2024, 6, 3, 12, 0))  # set back before the session the bars belong to
        (shown,) = rig.service.cards()
        assert shown.instance_id == card and shown.price is not None  # the stored price, not an error
        status = rig.service.status()
        assert status["clock_behind"].startswith("waiting for the clock: it reads 2024-06-03T12:00:00Z")
        assert [c["id"] for c in status["instances"]] == [card]
        rig.clock.set(utc(2024, 6, 5, 15, 5))
        assert rig.service.status()["clock_behind"] is None
    finally:
        rig.parts.close()


def test_the_kiosk_waits_for_a_clock_set_back_and_trades_once_it_has_passed(tmp_path, algos, qtbot):
    start = utc(2024, 6, 4, 14, 0)
    rig = SimRig(tmp_path, start, algorithm_dirs=(algos,))
    try:
        rig.add("AAPL", "flipper", 5_000)
        recorded = start + timedelta(minutes=20)  # an earlier run cycled up to here
        rig.system.set_config(LAST_CYCLE_KEY, json.dumps({"minute": utc_text(recorded)}))
        assert recorded_until(rig.system, rig.market) == recorded
    finally:
        rig.parts.close()

    # The clock starts 20 simulated minutes behind the record (2 s of real time at speed 600).
    host = EngineHost(Settings(data_root=tmp_path, sim_forced=True, algorithm_dirs=(algos,)),
                      SimClock(start, speed=600))
    notices = []
    host.signals.notice.connect(notices.append)
    host.start()
    try:
        qtbot.waitUntil(lambda: any("waiting for the clock" in n.message for n in notices), timeout=10_000)
        assert host.orchestrator.waiting_for_clock
        assert host.orchestrator.reports == []  # nothing traded while the clock is behind
        qtbot.waitUntil(lambda: len(host.orchestrator.reports) >= 2, timeout=30_000)
        assert min(r.minute for r in host.orchestrator.reports) >= recorded
        assert not host.orchestrator.waiting_for_clock
        assert any(n.message == "the clock is right again: trading resumes" for n in notices)
    finally:
        host.stop()
