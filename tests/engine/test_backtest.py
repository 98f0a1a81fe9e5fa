"""The replay engine: no look-ahead, parity with the live cycle, hand-checked figures, errors."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.plugins.loader import load_algorithm_class
from app.engine.backtest.replay import (BacktestCancelled, BacktestError, BacktestRequest, BacktestRunError,
                                 MemoryBars, replay_bars, run_backtest)
from app.engine.host.wiring import EngineOptions
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.portfolio.money import card_figures
from app.engine.system.settings import Settings
from app.engine.sim.market import SimMarket
from app.storage.market_store import MarketStore
from app.storage.records import Bar
from app.storage.timefmt import to_epoch, utc_text
from tests.engine.crash_child import FLIPPER_SOURCE, WAKE_OFFSET, SimRig, write_algorithm

CAL = MarketCalendar()
HERE = Path(__file__).parent
LOOKAHEAD = HERE / "lookahead_algorithms"
BROKEN = HERE / "broken_algorithms"
DAY = date(2024, 6, 4)  # a full summer session: 13:30-19:59 UTC
OPEN = to_epoch(CAL.session_open(DAY))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def request(algorithm: str = "sma_crossover", start: date = DAY, end: date = DAY, **kw) -> BacktestRequest:
    kw.setdefault("symbol", "TEST")
    return BacktestRequest(algorithm, start=start, end=end, **kw)


def sim_bars(symbol: str, first: date, last: date) -> list[Bar]:
    sim = SimMarket(CAL, None, seed=0)  # type: ignore[arg-type] - session_bars never touches the store
    return [b for day in CAL.sessions_between(first, last) for b in sim.session_bars(symbol, day)]


def sim_settings(tmp_path: Path, *dirs: Path) -> Settings:
    return Settings(data_root=tmp_path / "data", sim_forced=True, algorithm_dirs=dirs)


# --- hand-checked -----------------------------------------------------------------------------
# One full session. Closes: the shipped test's crossover series, then 10 to the close; every bar
# opens 0.25 below the previous close (the first at 10). fast=2, slow=3, capital 1000.
#   minute 6 sees closes ..12: cross up, 1000 // 12 = 83 -> fills at bar 6's open 11.75 (975.25)
#   minute 9 sees closes ..11: cross down -> sells 83 at bar 9's open 10.75 (892.25): cash 917.00
#   minute 14 sees closes ..10: cross up, 917 // 10 = 91 -> fills at bar 14's open 9.75 (887.25)
#   final: 91 x 10 + 29.75 = 939.75. Peak value 1186.75 (minute 8: 83 x 14 + 24.75), trough
#   917.00 while flat (minutes 10-14): max drawdown 269.75. Holding at minutes 7-9 and 15-389.
HAND_CLOSES = [10, 10, 10, 10, 9, 12, 13, 14, 11, 8, 8, 8, 7, 10] + [10] * 376


def hand_bars() -> list[Bar]:
    opens = [10.0] + [c - 0.25 for c in HAND_CLOSES[:-1]]
    return [Bar(OPEN + 60 * i, float(o), max(o, c) + 0.1, min(o, c) - 0.1, float(c), 100)
            for i, (o, c) in enumerate(zip(opens, HAND_CLOSES))]


def test_sma_crossover_on_a_hand_made_session_gives_the_hand_computed_trades_and_figures() -> None:
    result = replay_bars(request(capital=Decimal(1000), params={"fast": 2, "slow": 3}), hand_bars())
    trades = [(utc_text(t.timestamp), t.side, t.shares, t.price, t.value, utc_text(t.decided_at))
              for t in result.trades]
    assert trades == [
        ("2024-06-04T13:36:00Z", "buy", 83, Decimal("11.75"), Decimal("975.25"), "2024-06-04T13:36:00Z"),
        ("2024-06-04T13:39:00Z", "sell", 83, Decimal("10.75"), Decimal("892.25"), "2024-06-04T13:39:00Z"),
        ("2024-06-04T13:44:00Z", "buy", 91, Decimal("9.75"), Decimal("887.25"), "2024-06-04T13:44:00Z"),
    ]
    assert (result.final_value, result.final_shares, result.uninvested) == (Decimal("939.75"), 91, Decimal("29.75"))
    assert (result.pnl, result.pnl_pct) == (Decimal("-60.25"), Decimal("-6.025"))
    assert (result.round_trips, result.winning_trips, result.win_rate) == (1, 0, 0.0)
    assert result.max_drawdown == pytest.approx(269.75)
    assert result.max_drawdown_pct == pytest.approx(269.75 / 1186.75 * 100)
    assert result.exposure_pct == pytest.approx(378 / 390 * 100)
    assert (result.minutes, result.bars, result.refused_orders, result.unfilled_order) == (390, 390, 0, None)
    # Buy and hold: 100 shares at the first open of 10, worth 10 at the end.
    assert (result.buy_and_hold_pnl, result.buy_and_hold_pnl_pct) == (Decimal(0), Decimal(0))
    curve = result.equity_curve
    assert len(curve) == 391 and curve[0].value == 1000 and curve[-1].value == pytest.approx(939.75)
    assert curve[-1].timestamp == CAL.session_close(DAY) and max(p.value for p in curve) == pytest.approx(1186.75)


def test_slippage_moves_buys_up_and_sells_down_by_the_basis_points() -> None:
    result = replay_bars(request(capital=Decimal(1000), params={"fast": 2, "slow": 3}, slippage_bps=10),
                         hand_bars())
    assert [(t.side, t.shares, t.price) for t in result.trades] == [
        ("buy", 83, Decimal("11.76175")), ("sell", 83, Decimal("10.73925")), ("buy", 91, Decimal("9.75975"))]
    assert result.buy_and_hold_pnl == 99 * (Decimal(10) - Decimal("10.01"))


def test_an_order_with_no_later_bar_is_reported_unfilled_and_repeats_are_refused() -> None:
    bars = hand_bars()[:14]  # the session's data ends right after the second cross up
    result = replay_bars(request(capital=Decimal(1000), params={"fast": 2, "slow": 3}), bars)
    assert [t.side for t in result.trades] == ["buy", "sell"]
    assert result.unfilled_order == ("the buy of 91 shares decided at 2024-06-04T13:44:00Z had no later bar "
                                     "in the range to fill at")
    # Every later minute sees the same cross and asks again, as live: refused while the order is open.
    assert result.refused_orders == 390 - 15
    assert result.refusals[0].reason == "an earlier order of this card is still open"
    assert result.refusals[0].decided_at == utc(2024, 6, 4, 13, 45)


def test_risk_guard_refuses_a_buy_the_card_cannot_afford(tmp_path: Path) -> None:
    folder = write_algorithm(tmp_path / "algos", "greedy", '''\
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Greedy"
    description = "Buys a thousand shares every minute."

    def run(self, current_time, algo_id):
        return ("buy", 1000)
''')
    result = replay_bars(request("greedy", capital=Decimal(1000)), hand_bars(), algorithm_dirs=[folder])
    assert result.trades == () and result.refused_orders == 390 and len(result.refusals) == 20
    assert result.refusals[0].reason == "no price yet for this ticker"  # minute 0 sees no bar
    assert "more than the card's uninvested $1,000.00" in result.refusals[1].reason


# --- no look-ahead ------------------------------------------------------------------------------


def test_the_algorithm_never_sees_a_bar_or_fill_at_or_after_its_decision_minute() -> None:
    recorder = load_algorithm_class("recorder", [LOOKAHEAD])
    recorder.seen.clear()
    bars = sim_bars("AAPL", date(2024, 6, 3), date(2024, 6, 5))  # one warm-up session, two replayed
    result = replay_bars(request("recorder", date(2024, 6, 4), date(2024, 6, 5), symbol="AAPL"), bars,
                         algorithm_dirs=[LOOKAHEAD])
    seen = recorder.seen
    assert len(seen) == result.minutes == 780
    assert all(newest < now for now, newest, _ in seen)
    # Not vacuous: every run saw everything up to the bar just closed (or the previous session's last).
    opens = {to_epoch(CAL.session_open(d)) for d in (date(2024, 6, 4), date(2024, 6, 5))}
    for now, newest, count in seen:
        assert newest == now - 60 or (now in opens and now - newest > 3600), (now, newest)
        assert count >= 5 * 390
    assert len(result.trades) > 100  # its own fills were checked too


def test_memory_bars_truncate_whatever_range_is_asked() -> None:
    bars = hand_bars()[:10]
    ctx = MemoryBars("TEST", bars)
    ctx.now, ctx.visible = bars[5].ts, 5
    assert ctx.last_bars("TEST", 100, 2 ** 40) == bars[:5]
    assert ctx.last_bars("TEST", 2, bars[3].ts) == bars[1:3]
    assert ctx.bars_between("TEST", 0, 2 ** 40) == bars[:5]
    assert ctx.bars_between("TEST", bars[2].ts, bars[3].ts) == bars[2:4]
    assert ctx.last_bars("OTHER", 5, 2 ** 40) == [] and ctx.last_bars("TEST", 0, 2 ** 40) == []


# --- parity with the live cycle -----------------------------------------------------------------


def test_replay_trades_exactly_like_the_live_cycle_on_the_sim_broker(tmp_path: Path) -> None:
    algos = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    days = [date(2024, 6, 4), date(2024, 6, 5)]
    rig = SimRig(tmp_path / "data", utc(2024, 6, 4, 13, 29), algorithm_dirs=(algos,),
                 options=EngineOptions(time_budget_s=5.0, sim_slippage_bps=5.0))
    try:
        crossing = rig.add("NVDA", "sma_crossover", 10_000, fast=2, slow=3)
        flipper = rig.add("AAPL", "flipper", 10_000)
        rig.start()
        for day in days:
            for minute in rig.session_minutes(day):
                result = rig.step(minute)
                assert not result.faults and not result.refused, result.outcomes
        # The last minute's order fills at the last bar, published at the next session's open.
        next_open = CAL.session_open(CAL.next_session(days[-1]))
        rig.clock.set(next_open + WAKE_OFFSET)
        rig.publish(rig.clock.now())
        rig.parts.journal.settle(0)
        assert rig.system.open_orders() == []

        for instance_id, symbol, algorithm, params in ((crossing, "NVDA", "sma_crossover", {"fast": 2, "slow": 3}),
                                                       (flipper, "AAPL", "flipper", {})):
            live = [(tx.timestamp, tx.type, tx.shares, Decimal(str(tx.price)))
                    for tx in rig.system.get_transactions(instance_id, oldest_first=True)]
            replay = run_backtest(BacktestRequest(algorithm, symbol, days[0], days[-1], capital=Decimal(10_000),
                                                  params=params, slippage_bps=5.0), settings=rig.settings)
            assert [(utc_text(t.timestamp), t.side, t.shares, t.price) for t in replay.trades] == live
            assert len(live) > (20 if algorithm == "sma_crossover" else 700)
            last_close = rig.market.latest_bar(symbol).close
            live_card = card_figures(10_000, rig.system.get_transactions(instance_id, oldest_first=True), last_close)
            assert (replay.final_value, replay.pnl, replay.final_shares) == \
                (live_card.value, live_card.pnl, live_card.shares)
    finally:
        rig.close()


# --- run_backtest: data, threads, progress, cancel ----------------------------------------------


def test_sim_mode_generates_missing_sessions_once_and_runs_in_a_worker_thread(tmp_path: Path) -> None:
    settings = sim_settings(tmp_path)
    req = BacktestRequest("sma_crossover", "MSFT", date(2024, 3, 4), date(2024, 3, 8), warmup_sessions=2)
    out: dict = {}
    fractions: list[float] = []

    def work() -> None:
        out["result"] = run_backtest(req, fractions.append, threading.Event(), settings=settings)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(60)
    first = out["result"]
    assert first.minutes == first.bars == 5 * 390 and first.trades
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    with MarketStore(tmp_path / "data" / "sim" / "stocks.db") as store:
        covered = store.covered_sessions("MSFT", date(2024, 2, 1), date(2024, 3, 31))
        assert covered == set(CAL.sessions_between(date(2024, 2, 29), date(2024, 3, 8)))
        # The bars are SimMarket's, the ones the sim engine trades on.
        assert store.bars_between("MSFT", OPEN - 10 ** 8, 2 ** 40)[-1] == \
            SimMarket(CAL, store).session_bars("MSFT", date(2024, 3, 8))[-1]
    again = run_backtest(req, settings=settings)
    assert again.trades == first.trades and again.final_value == first.final_value
    json.dumps(again.to_json())


def test_cancel_stops_the_replay(tmp_path: Path) -> None:
    cancel = threading.Event()
    calls: list[float] = []

    def progress(fraction: float) -> None:
        calls.append(fraction)
        if len(calls) == 2:
            cancel.set()

    bars = sim_bars("AAPL", date(2024, 6, 3), date(2024, 6, 7))
    with pytest.raises(BacktestCancelled):
        replay_bars(request(start=date(2024, 6, 4), end=date(2024, 6, 7), symbol="AAPL"), bars,
                    progress=progress, cancel=cancel)
    assert len(calls) == 2


def test_keys_configured_fetch_missing_sessions_through_alpaca_once(tmp_path: Path, fake_alpaca) -> None:
    sessions = CAL.sessions_between(date(2024, 5, 24), date(2024, 6, 5))  # five warm-up sessions + two
    fake_alpaca.add_bars("AAPL", [tuple(b) for b in sim_bars("AAPL", sessions[0], sessions[-1])])
    settings = Settings(api_key=fake_alpaca.key, secret=fake_alpaca.secret, trading_url=fake_alpaca.origin,
                        data_url=fake_alpaca.origin, data_root=tmp_path)
    req = BacktestRequest("sma_crossover", "AAPL", date(2024, 6, 4), date(2024, 6, 5), params={"fast": 5, "slow": 20})
    fractions: list[float] = []
    fetched = run_backtest(req, fractions.append, settings=settings)
    assert fake_alpaca.requests("/v2/stocks/bars") and fetched.bars == 780 and fetched.trades
    assert any(0 < f <= 0.3 for f in fractions) and fractions[-1] == 1.0
    in_memory = replay_bars(req, sim_bars("AAPL", sessions[0], sessions[-1]))
    assert fetched.trades == in_memory.trades
    fake_alpaca.clear_log()
    assert run_backtest(req, settings=settings).trades == fetched.trades
    assert fake_alpaca.requests("/v2/stocks/bars") == []


# --- errors ---------------------------------------------------------------------------------------


def test_an_algorithm_exception_stops_the_backtest_with_its_error() -> None:
    with pytest.raises(BacktestRunError, match=r"raises failed at 2024-06-04T13:30:00Z: "
                                               r"ZeroDivisionError: integer division or modulo by zero "
                                               r"\(raises.py line 12\)"):
        replay_bars(request("raises"), hand_bars(), algorithm_dirs=[BROKEN])
    with pytest.raises(BacktestRunError, match="shares must be at least 1"):
        replay_bars(request("returns_negative"), hand_bars(), algorithm_dirs=[BROKEN])


@pytest.mark.parametrize("kw, message", [
    ({"symbol": "../x"}, "is not a ticker"),
    ({"end": date(2024, 6, 3)}, "is before the start date"),
    ({"capital": Decimal(0)}, "capital must be positive"),
    ({"capital": "lots"}, "capital is not a number"),
    ({"slippage_bps": -1}, "slippage must be between"),
    ({"warmup_sessions": -1}, "warmup_sessions must be"),
])
def test_bad_requests_are_refused_with_a_sentence(kw: dict, message: str) -> None:
    with pytest.raises(BacktestError, match=message):
        request(**kw)


def test_unknown_algorithm_bad_parameter_and_empty_range_change_nothing(tmp_path: Path) -> None:
    settings = sim_settings(tmp_path)
    with pytest.raises(BacktestError, match="unknown algorithm type 'sma_crosover'; did you mean 'sma_crossover'"):
        run_backtest(request("sma_crosover"), settings=settings)
    with pytest.raises(BacktestError, match="bad parameter for sma_crossover: fast .3. must be smaller than slow"):
        run_backtest(request(params={"fast": 3, "slow": 3}), settings=settings)
    with pytest.raises(BacktestError, match="no completed trading sessions between 2024-06-08 and 2024-06-09"):
        run_backtest(request(start=date(2024, 6, 8), end=date(2024, 6, 9)), settings=settings)
    assert not (tmp_path / "data").exists()
    with pytest.raises(BacktestError, match="no TEST bars between 2024-06-04 and 2024-06-04"):
        replay_bars(request(), [b._replace(ts=b.ts - 86_400) for b in hand_bars()])
