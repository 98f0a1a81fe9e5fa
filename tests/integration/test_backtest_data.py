"""What a backtest says about its data, on real files: run_backtest in sim mode over imported bars."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from app.engine.backtest.replay import BacktestError, BacktestRequest, DataProvenance, replay_bars, run_backtest
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.system.settings import Settings
from app.engine.sim.market import SimMarket
from app.storage.market_store import MarketStore, SessionSpan
from app.storage.records import Bar, BarSource

CAL = MarketCalendar()
WARMUP = CAL.sessions_between(date(2024, 5, 28), date(2024, 5, 31))  # 4 of the 5 warm-up sessions
RANGE = CAL.sessions_between(date(2024, 6, 3), date(2024, 6, 7))


def walk(day: date, base: float, minutes: int | None = None) -> list[Bar]:
    out = []
    for i, ts in enumerate(CAL.session_minutes(day)[:minutes]):
        c = round(base + (i % 13 - 6) * 0.07, 2)
        out.append(Bar(ts, c, c + 0.05, c - 0.05, c, 100 + i))
    return out


def import_bars(path: Path, symbol: str, days: dict[date, list[Bar]], partial: set[date] = frozenset()) -> None:
    """What import-bars stores: the bars as IMPORTED, each session complete unless named partial."""
    with MarketStore(path, minute_filter=CAL.is_session_minute) as store:
        staging = store.begin_import()
        assert staging.add([(i, symbol, b) for i, b in enumerate((b for d in days.values() for b in d), 2)]) == []
        staging.commit({symbol: [SessionSpan(day, day not in partial, bars[0].ts, bars[-1].ts)
                                 for day, bars in days.items()]})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_root=tmp_path / "data", sim_forced=True)


def request(**kw) -> BacktestRequest:
    return BacktestRequest("sma_crossover", "SPX", RANGE[0], RANGE[-1], params={"fast": 5, "slow": 20}, **kw)


def test_gaps_of_a_real_symbol_are_named_never_simulated(settings: Settings) -> None:
    days = {d: walk(d, 3092.91 + k) for k, d in enumerate(WARMUP + RANGE) if d != RANGE[2]}
    days[RANGE[-1]] = walk(RANGE[-1], 3100.0, minutes=120)  # the file ended at 11:29 New York
    db = settings.data_dir("sim") / "stocks.db"
    import_bars(db, "SPX", days, partial={RANGE[-1]})
    with MarketStore(db) as store:
        before = store.connection.execute("SELECT * FROM bars ORDER BY ts").fetchall()

    result = run_backtest(request(), settings=settings)
    data = result.data
    assert data is not None and not data.simulated
    assert data.missing_sessions == (RANGE[2], RANGE[-1]) and data.partial_sessions == (RANGE[-1],)
    assert data.warmup_missing == (date(2024, 5, 24),)
    in_range = sum(len(days[d]) for d in RANGE if d in days)
    assert data.text == (f"real (imported) · {in_range:,} bars · 2 sessions missing (1 of them partial)"
                         " · 1 warm-up session missing")
    assert result.to_json()["data"]["missing_sessions"] == ["2024-06-05", "2024-06-07"]
    assert json.dumps(result.to_json())  # plain JSON types
    stored = sorted(b for bars in days.values() for b in bars)
    assert result.trades == replay_bars(request(), stored).trades
    with MarketStore(db) as store:
        assert store.connection.execute("SELECT * FROM bars ORDER BY ts").fetchall() == before
        assert store.sources("SPX") == {BarSource.IMPORTED}

    with pytest.raises(BacktestError, match=r"SPX lacks 2 session\(s\) of 2024-06-03 to 2024-06-07 "
                                            r"\(2024-06-05, 2024-06-07\); import or fetch them"):
        run_backtest(request(require_complete=True), settings=settings)


def test_a_range_without_any_real_bar_says_why_nothing_ran(settings: Settings) -> None:
    import_bars(settings.data_dir("sim") / "stocks.db", "SPX", {date(2024, 5, 1): walk(date(2024, 5, 1), 50.0)})
    with pytest.raises(BacktestError, match="no SPX bars between 2024-06-03 and 2024-06-07: 5 sessions missing; "
                                            r"import or fetch them \(simulated bars are never used"):
        run_backtest(request(), settings=settings)


def test_a_symbol_without_real_bars_is_simulated_and_says_so(settings: Settings) -> None:
    result = run_backtest(request(), settings=settings)
    assert result.data is not None and result.data.simulated
    assert result.data.text == "SIMULATED · 1,950 bars" and result.data.missing_sessions == ()
    sim = SimMarket(CAL, None, seed=0)  # type: ignore[arg-type] - session_bars never touches the store
    with MarketStore(settings.data_dir("sim") / "stocks.db") as store:
        assert store.sources("SPX") == {BarSource.SIMULATED}
        assert store.bars_between("SPX", int(CAL.session_open(RANGE[0]).timestamp()),
                                  int(CAL.session_close(RANGE[0]).timestamp())) == sim.session_bars("SPX", RANGE[0])


@pytest.mark.parametrize("sources, text", [
    ({"imported": 2340}, "real (imported) · 2,340 bars"),
    ({"Alpaca": 10, "imported": 2340}, "real (imported + Alpaca) · 2,350 bars"),
    ({"unknown": 5}, "unknown source (stored before AutoTrader recorded where bars come from) · 5 bars"),
    ({"imported": 5, "unknown": 7}, "real (imported + unknown) · 12 bars"),
    ({"simulated": 780}, "SIMULATED · 780 bars"),
])
def test_the_data_line(sources: dict, text: str) -> None:
    assert DataProvenance(sources).text == text
