"""A simulator card on a symbol with real bars: refused at once with the reason, never left waiting."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.engine.host.client import ServiceError
from app.storage.records import Bar, BarSource
from app.storage.timefmt import to_epoch
from tests.engine.crash_child import SimRig


def test_a_sim_card_on_a_symbol_with_imported_bars_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    rig = SimRig(tmp_path / "data", datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc))
    try:
        opened = to_epoch(datetime(2024, 6, 3, 13, 30, tzinfo=timezone.utc))
        rig.market.upsert_many({"REAL": [Bar(opened + 60 * i, 10.0, 10.5, 9.5, 10.2, 1000) for i in range(30)]},
                               source=BarSource.IMPORTED)
        with pytest.raises(ServiceError, match="REAL has real bars .* backtest it instead"):
            rig.add("REAL", "sma_crossover", 1_000)
        assert rig.system.all_instances() == []
        assert rig.market.sources("REAL") == {BarSource.IMPORTED}  # no simulated bar was added
        assert rig.market.bar_count("REAL") == 30
        # A symbol without real bars is the simulator's to make up.
        card = rig.add("FAKE", "sma_crossover", 1_000)
        assert [i.id for i in rig.system.all_instances()] == [card]
    finally:
        rig.close()
