"""The one trading core: each refusal sentence is written once in app/, and the live cycle, the simulated
broker and the backtest all judge, price and book through the same functions."""

from __future__ import annotations

import ast
import inspect
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import app.engine.backtest.replay as replay
import app.engine.minute.cycle as cycle
from app.engine.backtest.replay import BacktestError, BacktestRequest, replay_bars
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.marketdata.clock import ManualClock
from app.engine.portfolio.money import Position, card_figures, whole_shares
from app.engine.sim.broker import SimBroker
from app.engine.trading import guard
from app.engine.trading.fills import FillRule, booked_price, check_slippage
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource, TransactionRecord
from app.storage.sim_book_store import SimBookStore
from app.storage.timefmt import from_epoch

APP = Path(guard.__file__).resolve().parents[2]
CAL = MarketCalendar()


def _literal_parts(node: ast.expr) -> list[str]:
    """The text a returned sentence is built from: a constant, the literal parts of an f-string,
    or the value of a module constant it names."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.Name) and isinstance(getattr(guard, node.id, None), str):
        return [getattr(guard, node.id)]
    return []


def _refusal_texts() -> tuple[set[str], set[str]]:
    """The refusal sentences of ``guard.refusal``: whole constant sentences, and the literal parts
    (long enough to be the sentence's own words, not a shared "$" or ", ") of the f-strings."""
    whole: set[str] = set()
    parts: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(guard.refusal))):
        if isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if isinstance(value, ast.Constant) or isinstance(value, ast.Name):
                whole.update(_literal_parts(value))
            else:
                for piece in [value] if not isinstance(value, ast.BinOp) else [value.left, value.right]:
                    parts.update(p.strip() for p in _literal_parts(piece) if len(p.strip()) >= 12)
    return whole, parts


def _app_strings() -> list[tuple[str, str]]:
    """Every string constant in app/ but docstrings, with its file."""
    found = []
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found.append((str(path.relative_to(APP)), node.value))
    return found


def test_each_refusal_sentence_is_written_once_in_app_in_the_trading_core() -> None:
    whole, parts = _refusal_texts()
    assert len(whole) >= 5 and len(parts) >= 8, (whole, parts)  # every rule's sentence was found
    assert {guard.ORDER_STILL_OPEN, "trading is halted for the whole account", "the market is closed"} <= whole
    strings = _app_strings()
    for sentence in whole:
        assert [path for path, text in strings if text.strip() == sentence] == ["engine/trading/guard.py"], sentence
    for fragment in parts:
        assert [path for path, text in strings if fragment in text] == ["engine/trading/guard.py"], fragment


def test_the_live_cycle_and_the_backtest_call_the_guard_function_itself(monkeypatch, tmp_path: Path) -> None:
    assert replay.refusal is guard.refusal and cycle.refusal is guard.refusal
    said: list[str] = []

    def spy(req: guard.OrderRequest) -> str | None:
        reason = guard.refusal(req)
        if reason is not None:
            said.append(reason)
        return reason

    monkeypatch.setattr(replay, "refusal", spy)
    (tmp_path / "eager.py").write_text('''\
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Eager"
    description = "Buys two shares every minute: most minutes its last order is still open or it cannot pay."

    def run(self, current_time, algo_id):
        return ("buy", 2)
''')
    day = date(2024, 6, 4)
    minutes = CAL.session_minutes(day)
    # A bar every other minute: each buy waits a minute for its fill bar, and the next is refused.
    bars = [Bar(ts, 10.0, 10.5, 9.5, 10.0, 100) for ts in minutes[::2]]
    result = replay_bars(BacktestRequest("eager", "TEST", day, day, capital=Decimal(50)), bars,
                         algorithm_dirs=[tmp_path], calendar=CAL)
    reasons = {r.reason for r in result.refusals}
    assert guard.ORDER_STILL_OPEN in reasons and any("more than the card's uninvested" in r for r in reasons)
    assert said[:len(result.refusals)] == [r.reason for r in result.refusals]
    assert len(said) == result.refused_orders


def test_one_fill_rule_prices_the_simulated_broker_and_the_backtest(tmp_path: Path) -> None:
    rule = FillRule(12.5)
    assert rule.price("buy", 100.0) == Decimal("100.125") and rule.price("sell", 100.0) == Decimal("99.875")
    assert rule.buy_cost(3, Decimal("10")) == Decimal("30.0375")
    # A real SimBroker fills at the rule's price for the open of the decision minute's bar.
    day = date(2024, 6, 4)
    first, second = CAL.session_minutes(day)[:2]
    clock = ManualClock(from_epoch(second) + timedelta(seconds=2))
    with MarketStore(tmp_path / "stocks.db") as market, SimBookStore(tmp_path / "book.db") as book:
        bars = [Bar(first, 10.0, 10.0, 10.0, 10.0, 1), Bar(second, 10.07, 10.1, 10.0, 10.0, 1)]
        market.upsert_many({"TEST": bars}, source=BarSource.IMPORTED)
        broker = SimBroker(book, market, CAL, clock.now, slippage_bps=12.5)
        state = broker.submit_market_order("at2-test-buy", "TEST", "buy", 3)
        assert state.filled_qty == 3 and state.filled_avg_price == rule.price("buy", 10.07)
    replayed = replay_bars(BacktestRequest("sma_crossover", "TEST", day, day, slippage_bps=12.5),
                           [Bar(ts, 10.07, 10.1, 10.0, 10.0, 1) for ts in CAL.session_minutes(day)], calendar=CAL)
    paid = rule.price("buy", 10.07)  # buy and hold buys at the first open, as a card's buy would fill
    assert replayed.buy_and_hold_pnl == int(Decimal(10_000) // paid) * (Decimal("10.0") - paid) < 0
    # The same sentence, from the same check, for a bad slippage wherever it is given.
    with pytest.raises(ValueError) as direct:
        check_slippage(-1)
    with pytest.raises(BacktestError) as backtest:
        BacktestRequest("sma_crossover", "TEST", CAL.first_day, CAL.first_day, slippage_bps=-1)
    with pytest.raises(ValueError) as sim:
        SimBroker(None, None, CAL, lambda: None, slippage_bps=-1)  # type: ignore[arg-type]
    assert str(direct.value) == str(backtest.value) == str(sim.value) == \
        "slippage must be between 0 and 10000 basis points, got -1"


def test_position_books_what_card_figures_and_the_backtest_sum() -> None:
    fills = [("buy", 7, Decimal("10.333")), ("sell", 3, Decimal("11.1")), ("buy", 1, Decimal("9.99")),
             ("sell", 5, Decimal("12"))]
    position = Position()
    amounts = [position.book(side, shares, price) for side, shares, price in fills]
    assert amounts == [Decimal("72.331"), Decimal("33.3"), Decimal("9.99"), Decimal("60")]
    txs = [TransactionRecord(i + 1, 1, side, shares, booked_price(price), "2024-06-04T13:30:00Z", None)
           for i, (side, shares, price) in enumerate(fills)]
    assert position.figures(1000, 12) == card_figures(1000, txs, 12)
    assert (position.shares, position.invested, position.count) == (0, Decimal("-10.979"), 4)
    with pytest.raises(ValueError, match="'buy' or 'sell'"):
        position.book("short", 1, Decimal(1))


def test_the_sizing_rule_gives_whole_shares_and_none_without_price_or_cash() -> None:
    assert whole_shares(Decimal(1000), Decimal("12")) == 83 == whole_shares(Decimal("1000.99"), Decimal("12"))
    assert whole_shares(Decimal(1000), Decimal(0)) == whole_shares(Decimal(-5), Decimal(12)) == 0
