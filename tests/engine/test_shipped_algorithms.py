"""The shipped algorithms on hand-made bar series, with fills simulated at the last close."""

from __future__ import annotations

import random
import sys
from datetime import timedelta
from decimal import Decimal

import pytest

from app.engine.algorithm_api import AlgorithmParamError
from app.engine.plugins.loader import create_algorithm

from .algo_helpers import MemoryContext, make_bars, minute, simulate


def algo(kind: str, ctx: MemoryContext, capital: float = 1000, **params: object):
    return create_algorithm(kind, "TEST", capital, params, context=ctx)


# --- sma_crossover -------------------------------------------------------------------
# fast=2, slow=3; a run at minute t sees closes c[t-4..t-1].
#   t=5: fast 10→9.5, slow 10→9.67: crosses down, but nothing held      -> hold
#   t=6: fast 9.5→10.5, slow 9.67→10.33: crosses up, 1000 // 12 = 83    -> buy 83
#   t=9: fast 13.5→12.5, slow 13→12.67: crosses down                    -> sell 83
#   t=14: fast 7.5→8.5, slow 7.67→8.33: crosses up; cash 4 + 83×11 = 917, 917 // 10 -> buy 91
SMA_CLOSES = [10, 10, 10, 10, 9, 12, 13, 14, 11, 8, 8, 8, 7, 10]


def test_sma_crossover_trades_at_the_hand_computed_minutes() -> None:
    ctx = MemoryContext(make_bars([float(c) for c in SMA_CLOSES]))
    sma = algo("sma_crossover", ctx, fast=2, slow=3)
    trades = simulate(sma, ctx, [minute(t) for t in range(len(SMA_CLOSES) + 1)])
    assert trades == [(minute(6), "buy", 83), (minute(9), "sell", 83), (minute(14), "buy", 91)]
    sma.run(minute(20), 1)  # data methods see a snapshot per run: take a fresh one
    assert sma.position() == 91 and sma.uninvested_cash() == Decimal(7)


def test_sma_crossover_is_the_same_when_woken_seconds_after_the_minute() -> None:
    ctx = MemoryContext(make_bars([float(c) for c in SMA_CLOSES]))
    sma = algo("sma_crossover", ctx, fast=2, slow=3)
    late = [minute(t) + timedelta(seconds=2) for t in range(len(SMA_CLOSES) + 1)]
    assert [(when, side, n) for when, side, n in simulate(sma, ctx, late)] == [
        (late[6], "buy", 83), (late[9], "sell", 83), (late[14], "buy", 91)]


def test_sma_crossover_holds_without_enough_bars_or_cash() -> None:
    ctx = MemoryContext(make_bars([float(c) for c in SMA_CLOSES]))
    sma = algo("sma_crossover", ctx, fast=2, slow=3)
    assert [sma.run(minute(t), 1) for t in range(4)] == [("hold", 0)] * 4
    poor = algo("sma_crossover", ctx, capital=5, fast=2, slow=3)
    assert simulate(poor, ctx, [minute(t) for t in range(len(SMA_CLOSES) + 1)]) == []


def test_sma_crossover_defaults_and_parameter_rules() -> None:
    ctx = MemoryContext()
    assert algo("sma_crossover", ctx).params == {"fast": 20, "slow": 50}
    with pytest.raises(AlgorithmParamError, match="must be smaller than slow"):
        algo("sma_crossover", ctx, fast=3, slow=3)
    with pytest.raises(AlgorithmParamError, match="'fast' must be at least 1"):
        algo("sma_crossover", ctx, fast=0)


def _reversed_sum(values, start=0):
    return sum(reversed(list(values)), start)


def _float_cross_sign(window: list[float], fast: int, slow: int, summing) -> int:
    """How the float averages compared (the code before integer sums): -1, 0 or 1."""
    f, s = summing(window[-fast:]) / fast, summing(window[1:]) / slow
    return (f > s) - (f < s)


def test_sma_crossover_decides_the_same_whatever_the_summation_order(monkeypatch) -> None:
    # Cent prices with many exact ties between the averages: where float sums come out +-1e-14.
    rng = random.Random(1)
    closes = [round(100 + rng.choice((-1, 0, 1)) * 0.01 * rng.randint(0, 3) + 0.01 * i % 7, 2) for i in range(800)]
    fast, slow = 2, 3
    windows = [closes[t - slow - 1:t] for t in range(slow + 1, len(closes))]
    flips = sum(_float_cross_sign(w, fast, slow, sum) != _float_cross_sign(w, fast, slow, _reversed_sum)
                for w in windows)
    assert flips > 5  # the data does exercise the hazard: float averages depend on the order

    def decisions(summing, filled: bool) -> list:
        ctx = MemoryContext(make_bars(closes))
        sma = algo("sma_crossover", ctx, capital=1_000_000, fast=fast, slow=slow)
        # The algorithm file's own module globals: its every sum() now adds in the given order.
        monkeypatch.setitem(vars(sys.modules[type(sma).__module__]), "sum", summing)
        times = [minute(t) for t in range(len(closes) + 1)]
        if filled:  # trades filled at the last close: the position then decides buys and sells
            return simulate(sma, ctx, times)
        sma.bind(ctx)  # never filled: every cross up is a buy decision
        return [sma.run(when, 1) for when in times]

    for filled in (False, True):
        forward = decisions(sum, filled)
        assert sum(1 for d in forward if "hold" not in d) > 30
        assert decisions(_reversed_sum, filled) == forward


# --- buy_and_hold --------------------------------------------------------------------

def test_buy_and_hold_buys_once_at_the_first_price_then_holds_forever() -> None:
    ctx = MemoryContext(make_bars([30.0, 20.0, 10.0, 50.0], start=minute(2)))
    bah = algo("buy_and_hold", ctx)
    trades = simulate(bah, ctx, [minute(t) for t in range(8)])
    assert trades == [(minute(3), "buy", 33)]  # no data before minute 3; 1000 // 30
    bah.run(minute(9), 1)
    assert bah.position() == 33 and bah.uninvested_cash() == Decimal(10)


def test_buy_and_hold_holds_when_one_share_costs_more_than_the_capital() -> None:
    ctx = MemoryContext(make_bars([2000.0, 1500.0, 900.0]))
    assert simulate(algo("buy_and_hold", ctx), ctx, [minute(t) for t in range(4)]) == [(minute(3), "buy", 1)]


# --- lot_exits -----------------------------------------------------------------------
# lookback 3, entry 5 % under the 3-bar high, lots of 50 % of 1000, exits at +10 % / -10 %.
#   t=4:  window 100,100,94: 94 <= 95                              -> buy lot A: 500 // 94 = 5
#   t=5:  window 100,94,93: entry signal, but A was bought inside the window -> hold
#   t=8:  window 100,100,90: 90 <= 95, A (bought t=4) is before the window -> buy lot B: 500 // 90 = 5
#   t=9:  window 100,90,95: entry signal, B inside the window             -> hold
#   t=10: price 99.5 >= B's target 99 (A's is 103.4)                       -> sell B's 5
#   t=11: price 101: A open (FIFO would wrongly have kept B, target 99)    -> hold
#   t=12: price 80 <= A's stop 84.6                                        -> sell A's 5
#   t=13: window 101,80,80, no lots; cash 530 − 450 + 497.5 + 400 = 977.5  -> buy 500 // 80 = 6
LOT_CLOSES = [100, 100, 100, 94, 93, 100, 100, 90, 95, 99.5, 101, 80, 80]
LOT_PARAMS = dict(lookback=3, entry_drop_pct=5, lot_size_pct=50, take_profit_pct=10, stop_loss_pct=10)


def test_lot_exits_opens_lots_on_dips_and_exits_each_at_its_own_level() -> None:
    ctx = MemoryContext(make_bars([float(c) for c in LOT_CLOSES]))
    lots = algo("lot_exits", ctx, **LOT_PARAMS)
    trades = simulate(lots, ctx, [minute(t) for t in range(len(LOT_CLOSES) + 1)])
    assert trades == [
        (minute(4), "buy", 5), (minute(8), "buy", 5), (minute(10), "sell", 5),
        (minute(12), "sell", 5), (minute(13), "buy", 6),
    ]
    lots.run(minute(20), 1)
    assert [(lot.price, lot.shares) for lot in lots.open_lots()] == [(80.0, 6)]
    assert lots.uninvested_cash() == Decimal("497.5")


def test_lot_exits_replays_a_restart_to_the_same_decisions() -> None:
    ctx = MemoryContext(make_bars([float(c) for c in LOT_CLOSES]))
    first = algo("lot_exits", ctx, **LOT_PARAMS)
    simulate(first, ctx, [minute(t) for t in range(11)])
    # A fresh instance (as after a power cut) rebuilds its lots from transactions alone.
    second = algo("lot_exits", ctx, **LOT_PARAMS)
    later = simulate(second, ctx, [minute(t) for t in range(11, len(LOT_CLOSES) + 1)])
    assert later == [(minute(12), "sell", 5), (minute(13), "buy", 6)]


def test_lot_exits_replaying_only_new_fills_matches_a_full_replay() -> None:
    rng = random.Random(11)
    ctx = MemoryContext(make_bars([100.0] * 5))
    running = algo("lot_exits", ctx, **LOT_PARAMS)
    held = 0
    for i in range(200):
        if held and rng.random() < 0.45:
            qty = rng.randint(1, held)
            ctx.record(1, "sell", qty, rng.choice([88.0, 95.0, 112.0]), minute(i))
            held -= qty
        else:
            qty = rng.choice([3, 5, 8])
            ctx.record(1, "buy", qty, rng.uniform(90, 110), minute(i))
            held += qty
        running.run(minute(4), 1)
        fresh = algo("lot_exits", ctx, **LOT_PARAMS)
        fresh.run(minute(4), 1)
        expected = [(lot.price, lot.shares, lot.opened_ts) for lot in fresh.open_lots()]
        assert [(lot.price, lot.shares, lot.opened_ts) for lot in running.open_lots()] == expected
        assert sum(lot.shares for lot in running.open_lots()) == held
    # A history that is not an extension of the replayed one (another card's, a restored file).
    ctx.fills[1] = ctx.fills[1][:50]
    running.run(minute(4), 1)
    fresh = algo("lot_exits", ctx, **LOT_PARAMS)
    fresh.run(minute(4), 1)
    assert [(lot.price, lot.shares) for lot in running.open_lots()] == [
        (lot.price, lot.shares) for lot in fresh.open_lots()]


def test_lot_exits_takes_partial_or_unmatched_sells_fifo() -> None:
    ctx = MemoryContext(make_bars([100.0] * 5))
    lots = algo("lot_exits", ctx, **LOT_PARAMS)
    ctx.record(1, "buy", 10, 100.0, minute(0))
    ctx.record(1, "buy", 5, 90.0, minute(1))
    ctx.record(1, "sell", 3, 95.0, minute(2))  # no lot of 3 shares, no exit level met
    lots.run(minute(5), 1)
    assert [(lot.price, lot.shares) for lot in lots.open_lots()] == [(100.0, 7), (90.0, 5)]
    ctx.record(1, "sell", 8, 95.0, minute(3))
    lots.run(minute(5), 1)
    assert [(lot.price, lot.shares) for lot in lots.open_lots()] == [(90.0, 4)]
