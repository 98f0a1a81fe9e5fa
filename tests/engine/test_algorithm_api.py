"""The public algorithm API: typed parameters and the injected, look-ahead-free data access."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.engine.algorithm_api import (
    INTERFACE_VERSION, AlgorithmBase, AlgorithmError, AlgorithmParamError, Bar, Param,
)
from app.engine.plugins.loader import load_algorithm_class

from .algo_helpers import START, MemoryContext, make_bars, minute


class Probe(AlgorithmBase):
    """Records what it saw; parameters of every type."""

    name = "Probe"
    description = "test double"
    parameters = {
        "window": Param(5, int, "bars", min=1, max=100),
        "ratio": Param(0.5, help="a float inferred from its default", min=0.0, max=1.0),
        "enabled": Param(True, bool),
        "mode": Param("fast", str, choices=("fast", "slow")),
    }

    def run(self, current_time: datetime, algo_id: int) -> tuple[str, int]:
        self.seen = self.bars_before(self.params["window"])
        return ("hold", 0)


def bound_probe(bars=None, capital=10_000.0) -> tuple[Probe, MemoryContext]:
    ctx = MemoryContext(make_bars([float(i) for i in range(1, 11)]) if bars is None else bars)
    probe = Probe("TEST", capital)
    probe.bind(ctx)
    return probe, ctx


# --- Param ---------------------------------------------------------------------------

@pytest.mark.parametrize(("param", "given", "expected"), [
    (Param(20, int), "20", 20),
    (Param(20, int), " 7 ", 7),
    (Param(20, int), 30.0, 30),
    (Param(1.5, float), "0.25", 0.25),
    (Param(1.5, float), 3, 3.0),
    (Param(1.5, float), Decimal("2.5"), 2.5),
    (Param(False, bool), "true", True),
    (Param(True, bool), "No", False),
    (Param(True, bool), 0, False),
    (Param("a", str, choices=("a", "b")), "b", "b"),
])
def test_param_coerces_cli_strings_and_numbers(param: Param, given: object, expected: object) -> None:
    result = param.coerce(given, "p")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(("param", "given", "message"), [
    (Param(20, int, min=1), "abc", "parameter 'p' must be a whole number; got 'abc'"),
    (Param(20, int, min=1), "2.5", "parameter 'p' must be a whole number; got '2.5'"),
    (Param(20, int, min=1), 0, "parameter 'p' must be at least 1; got 0"),
    (Param(20, int, max=50), "51", "parameter 'p' must be at most 50; got '51'"),
    (Param(20, int), True, "parameter 'p' must be a number, not True"),
    (Param(1.0, float), "nan", "parameter 'p' must be a finite number; got 'nan'"),
    (Param(True, bool), "maybe", "parameter 'p' must be true or false; got 'maybe'"),
    (Param("a", str, choices=("a", "b")), "c", "parameter 'p' must be one of 'a', 'b'; got 'c'"),
    (Param("a", str), 5, "parameter 'p' must be text; got 5"),
])
def test_param_rejects_bad_values_with_a_sentence(param: Param, given: object, message: str) -> None:
    with pytest.raises(AlgorithmParamError) as caught:
        param.coerce(given, "p")
    assert str(caught.value) == message


def test_param_infers_type_and_checks_its_own_default() -> None:
    assert Param(0.5).type is float and Param(3).type is int
    with pytest.raises(AlgorithmParamError, match="at least 1"):
        Param(0, int, min=1)
    with pytest.raises(TypeError, match="int, float, bool or str"):
        Param([1, 2])


# --- construction --------------------------------------------------------------------

def test_init_stores_ticker_capital_and_params_with_defaults() -> None:
    probe = Probe("AAPL", 5000, window="12", enabled="off")
    assert probe.ticker == "AAPL" and probe.initial_capital == 5000 and probe.capital == Decimal(5000)
    assert probe.params == {"window": 12, "ratio": 0.5, "enabled": False, "mode": "fast"}
    assert probe.interface_version == INTERFACE_VERSION


def test_unknown_parameter_suggests_the_close_name() -> None:
    sma = load_algorithm_class("sma_crossover")
    with pytest.raises(AlgorithmParamError) as caught:
        sma("AAPL", 10_000, fats=5)
    assert str(caught.value) == "unknown parameter 'fats' for sma_crossover; did you mean 'fast'?"
    with pytest.raises(AlgorithmParamError, match="it takes fast, slow"):
        sma("AAPL", 10_000, zzz=5)


@pytest.mark.parametrize(("ticker", "capital", "message"), [
    ("", 100, "ticker must be a non-empty symbol"),
    ("AAPL", 0, "initial capital must be positive"),
    ("AAPL", -5, "initial capital must be positive"),
    ("AAPL", "lots", "initial capital is not a number"),
])
def test_init_rejects_bad_ticker_or_capital(ticker: str, capital: object, message: str) -> None:
    with pytest.raises(AlgorithmParamError, match=message):
        Probe(ticker, capital)


def test_check_params_hook_rejects_cross_parameter_mistakes() -> None:
    sma = load_algorithm_class("sma_crossover")
    with pytest.raises(AlgorithmParamError, match=r"fast \(50\) must be smaller than slow \(20\)"):
        sma("AAPL", 1000, fast=50, slow=20)


# --- data access ---------------------------------------------------------------------

def test_bars_before_is_strictly_before_the_run_time() -> None:
    probe, ctx = bound_probe()
    probe.run(minute(4), 1)  # bars at minutes 0..3 have closed
    assert [b.close for b in probe.seen] == [1.0, 2.0, 3.0, 4.0]
    assert ctx.asked_before == [int(minute(4).timestamp())]


def test_the_bar_of_an_unfinished_minute_is_never_visible() -> None:
    probe, _ = bound_probe()
    probe.run(minute(4) + timedelta(seconds=30), 1)  # minute 4's bar is still open
    assert probe.seen[-1].ts == int(minute(3).timestamp())
    probe.run(minute(4) + timedelta(seconds=2), 1)
    assert probe.seen[-1].ts == int(minute(3).timestamp())


def test_bars_before_clips_a_future_time_and_returns_at_most_n() -> None:
    probe, _ = bound_probe()
    probe.run(minute(6), 1)
    assert [b.close for b in probe.bars_before(2)] == [5.0, 6.0]
    assert [b.close for b in probe.bars_before(100, minute(9))] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [b.close for b in probe.bars_before(3, minute(2))] == [1.0, 2.0]
    assert probe.bars_before(0) == []
    with pytest.raises(AlgorithmError, match="n >= 0"):
        probe.bars_before(-1)


def test_bars_between_is_closed_but_never_past_the_run_time() -> None:
    probe, _ = bound_probe()
    probe.run(minute(5), 1)
    assert [b.close for b in probe.bars_between(minute(1), minute(3))] == [2.0, 3.0, 4.0]
    assert [b.close for b in probe.bars_between(minute(3), minute(9))] == [4.0, 5.0]
    assert probe.bars_between(minute(7), minute(9)) == []


def test_last_price_is_the_close_of_the_last_closed_bar() -> None:
    probe, _ = bound_probe()
    probe.run(minute(3), 1)
    assert probe.last_price() == 3.0
    probe.run(minute(0), 1)
    assert probe.last_price() is None


def test_transactions_position_and_uninvested_cash_follow_the_money_rules() -> None:
    probe, ctx = bound_probe(capital=20_000)
    ctx.record(7, "buy", 100, 150.50, START)
    ctx.record(7, "buy", 50, 145.25, minute(1))
    ctx.record(7, "sell", 25, 155.75, minute(2))
    ctx.record(8, "buy", 1, 1.0, minute(2))  # another card's fill: invisible
    probe.run(minute(3), 7)
    assert [(t.type, t.shares) for t in probe.transactions()] == [("buy", 100), ("buy", 50), ("sell", 25)]
    assert probe.position() == 125
    # 20000 − (15050 + 7262.50 − 3893.75)
    assert probe.uninvested_cash() == Decimal("1581.25")
    assert probe.affordable_shares(150.0) == 10
    assert probe.affordable_shares(None) == 0


def test_a_fill_recorded_between_runs_is_seen_by_the_next_run() -> None:
    probe, ctx = bound_probe(capital=1000)
    probe.run(minute(3), 1)
    assert probe.position() == 0
    ctx.record(1, "buy", 4, 10.0, minute(3))
    assert probe.position() == 0  # same run: the snapshot does not change mid-decision
    probe.run(minute(4), 1)
    assert probe.position() == 4 and probe.uninvested_cash() == Decimal(960)


def test_data_methods_need_a_context_and_an_aware_time() -> None:
    probe = Probe("TEST", 100)
    with pytest.raises(AlgorithmError, match="not bound"):
        probe.run(minute(3), 1)
    probe.bind(MemoryContext(make_bars([1.0])))
    with pytest.raises(ValueError, match="naive"):
        probe.run(datetime(2024, 6, 4, 14, 0), 1)
    fresh = Probe("TEST", 100)
    fresh.bind(MemoryContext())
    with pytest.raises(AlgorithmError, match="no current time"):
        fresh.bars_before(1)


def test_a_subclass_that_does_not_implement_run_cannot_be_created() -> None:
    class Lazy(AlgorithmBase):
        pass

    with pytest.raises(TypeError):
        Lazy("TEST", 100)


def test_bar_is_re_exported_from_storage_records() -> None:
    from app.storage.records import Bar as StorageBar

    assert Bar is StorageBar
    assert START.tzinfo is timezone.utc
