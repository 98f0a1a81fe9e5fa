"""EngineService on a real sim engine: validation that writes nothing, available cash, stop, halt,
and isolation of broken algorithms (each faults alone, the healthy card keeps trading)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.host.client import ServiceError
from app.engine.host.wiring import EngineOptions
from app.engine.portfolio.money import card_figures
from tests.engine.crash_child import SimRig

BROKEN = Path(__file__).resolve().parent / "broken_algorithms"
T0 = datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc)  # Tuesday, mid-session


def minute(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


@pytest.fixture
def rig(tmp_path):
    r = SimRig(tmp_path / "data", T0, algorithm_dirs=(BROKEN,), options=EngineOptions(time_budget_s=0.5))
    yield r
    r.close()


def row_counts(rig: SimRig) -> dict[str, int]:
    """Rows in every system.db table and in the sim broker's order book."""
    conn = rig.system.connection
    counts = {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
              for table in ("algorithm_instances", "transactions", "orders", "system_config")}
    counts["sim_orders"] = len(rig.parts.broker._book.open_orders())
    return counts


# --- create_instance validation -----------------------------------------------------------

@pytest.mark.parametrize("ticker, algo, capital, params, expected", [
    ("nvda!", "sma_crossover", "1000", {}, "'NVDA!' is not a ticker"),
    ("../account", "sma_crossover", "1000", {}, "is not a ticker"),
    ("", "sma_crossover", "1000", {}, "is not a ticker"),
    ("NVDA", "no_such_algo", "1000", {}, "no_such_algo"),
    ("NVDA", "syntax_error", "1000", {}, "SyntaxError line 3"),
    ("NVDA", "sma_crossover", "1000", {"fsat": "5"}, "did you mean 'fast'?"),
    ("NVDA", "sma_crossover", "1000", {"fast": "60", "slow": "50"}, "fast (60) must be smaller than slow (50)"),
    ("NVDA", "sma_crossover", "1000", {"fast": "quick"}, "fast"),
    ("NVDA", "sma_crossover", "0", {}, "capital must be more than $0"),
    ("NVDA", "sma_crossover", "-5", {}, "capital must be more than $0"),
    ("NVDA", "sma_crossover", "NaN", {}, "capital must be more than $0"),
    ("NVDA", "sma_crossover", "ten dollars", {}, "'ten dollars' is not an amount of dollars"),
    ("NVDA", "sma_crossover", "100000.01", {}, "capital $100,000.01 is more than the $100,000.00 available"),
    ("NVDA", "sma_crossover", "1e12", {}, "capital must be at most $100,000,000.00"),
])
def test_create_instance_refuses_bad_input_and_writes_nothing(rig, ticker, algo, capital, params, expected):
    before = row_counts(rig)
    with pytest.raises(ServiceError) as err:
        rig.service.create_instance(ticker, algo, capital, params)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)
    assert row_counts(rig) == before


def test_create_instance_accepts_dollar_text_and_stores_coerced_params(rig):
    card = rig.service.create_instance(" nvda ", "sma_crossover", "$1,234.5", {"fast": "3", "slow": "7"})
    inst = rig.system.get_instance(card)
    assert (inst.ticker, inst.initial_capital, inst.status) == ("NVDA", 1234.5, "running")
    assert inst.params_json == '{"fast": 3, "slow": 7}'
    assert rig.market.latest_bar("NVDA") is not None  # history made ready for the new ticker
    # Exactly the whole account is allowed.
    rig.service.create_instance("AAPL", "buy_and_hold", str(Decimal(100_000) - Decimal("1234.50")))


def test_available_cash_is_broker_cash_minus_uninvested_of_running_cards(rig):
    card = rig.add("AAPL", "buy_and_hold", 10_000)
    assert rig.service.available_cash() == Decimal(90_000)
    rig.step(minute(1))  # buys
    rig.step(minute(2))  # the fill is recorded
    (tx,) = rig.system.get_transactions(card)
    cost = Decimal(str(tx.price)) * tx.shares
    assert cost > Decimal(9_000)
    cash = rig.parts.broker.account_cash()
    assert cash == Decimal(100_000) - cost
    # $100k, one $10k card that invested `cost`: the seed's cash − Σ capital would say 90k − cost.
    assert rig.service.available_cash() == Decimal(90_000)
    with pytest.raises(ServiceError, match="more than the \\$90,000.00 available"):
        rig.service.create_instance("MSFT", "buy_and_hold", "90000.01")
    rig.service.create_instance("MSFT", "buy_and_hold", "90000")
    assert rig.service.available_cash() == Decimal(0)
    # A stopped card's money is free again (its shares stay in the account, its cash was never taken).
    rig.service.stop_instance(card)
    assert rig.service.available_cash() == Decimal(10_000) - cost
    assert Decimal(rig.service.status()["available_cash"]) == Decimal(10_000) - cost


# --- stop ---------------------------------------------------------------------------------

def hold_shares(rig: SimRig) -> tuple[int, int]:
    card = rig.add("AAPL", "buy_and_hold", 5_000)
    rig.step(minute(1))
    rig.step(minute(2))
    shares = card_figures(5_000, rig.system.get_transactions(card), None).shares
    assert shares > 0
    return card, shares


def test_stop_with_liquidate_while_open_sells_at_market(rig):
    card, shares = hold_shares(rig)
    result = rig.service.stop_instance(card, liquidate=True)
    assert result.message.endswith(f"; selling {shares} AAPL at market")
    assert rig.system.get_instance(card).status == "stopped"
    (sell,) = rig.system.open_orders()
    assert (sell.algorithm_id, sell.side, sell.shares) == (card, "sell", shares)
    assert rig.parts.broker.get_order(sell.client_order_id).status == "submitted"
    rig.step(minute(3))  # the stopped card's sell still fills and is recorded
    assert card_figures(5_000, rig.system.get_transactions(card), None).shares == 0
    assert rig.parts.broker.position("AAPL") == 0
    assert [c.instance_id for c in rig.service.cards()] == []


def test_stop_with_liquidate_while_closed_is_refused_with_when_it_can(rig):
    card, shares = hold_shares(rig)
    rig.step(minute(3))
    rig.clock.set(datetime(2024, 6, 8, 16, 0, tzinfo=timezone.utc))  # Saturday
    before = row_counts(rig)
    with pytest.raises(ServiceError) as err:
        rig.service.stop_instance(card, liquidate=True)
    opens = datetime(2024, 6, 10, 13, 30, tzinfo=timezone.utc).astimezone().strftime("%a %H:%M")
    assert str(err.value) == (f"the market is closed: shares can be sold from {opens}. "
                              "Stop without selling, or try again then")
    assert row_counts(rig) == before and rig.system.get_instance(card).status == "running"
    # Stopping without selling works any time; the shares stay in the account.
    result = rig.service.stop_instance(card)
    assert result.message.endswith(f"; its {shares} AAPL shares stay in the account")
    assert rig.parts.broker.position("AAPL") == shares
    with pytest.raises(ServiceError, match="no running instance with id"):
        rig.service.stop_instance(card)
    with pytest.raises(ServiceError, match="no running instance with id 999"):
        rig.service.stop_instance(999)


def test_liquidation_does_not_sell_shares_an_open_sell_already_covers(tmp_path, rig):
    card, shares = hold_shares(rig)
    rig.parts.journal.place(card, "AAPL", "sell", shares, minute(2))  # e.g. the algorithm's own sell
    rig.service.stop_instance(card, liquidate=True)
    assert [(o.side, o.shares) for o in rig.system.orders_for(card) if o.side == "sell"] == [("sell", shares)]


# --- halt ---------------------------------------------------------------------------------

def test_halt_refuses_every_order_until_trading_resumes(rig):
    card = rig.add("AAPL", "healthy", 5_000)
    rig.service.halt()
    assert rig.service.status()["halted"] is True
    assert rig.service.account().halted is True
    for i in (1, 2):
        result = rig.step(minute(i))
        assert [(o.action, o.reason) for o in result.outcomes] == \
            [("refused", "trading is halted for the whole account")]
    assert rig.system.orders_for(card) == [] and rig.parts.broker._book.open_orders() == []
    (snapshot,) = rig.service.cards()
    assert snapshot.refused_reason == "trading is halted for the whole account"
    rig.service.resume_trading()
    assert rig.step(minute(3)).orders == 1
    rig.step(minute(4))
    rig.service.halt()
    held = card_figures(5_000, rig.system.get_transactions(card), None).shares
    assert held == 3
    with pytest.raises(ServiceError, match="trading is halted"):
        rig.service.stop_instance(card, liquidate=True)
    assert rig.system.get_instance(card).status == "running"
    rig.service.resume_trading()
    assert rig.step(minute(5)).orders == 1
    (snapshot,) = rig.service.cards()
    assert snapshot.refused_reason is None


# --- isolation ----------------------------------------------------------------------------

BROKEN_REASONS = {
    "syntax_error": "SyntaxError line 3: invalid syntax",
    "import_error": "No module named 'autotrader_no_such_module'",
    "raises": "ZeroDivisionError: integer division or modulo by zero (raises.py line 12)",
    "returns_none": "returned None: expected (action, shares)",
    "returns_negative": "returned ('buy', -5): shares must be at least 1",
    "returns_huge": "returned ('buy', 1000000000): absurd share count (limit 1,000,000)",
    "sleeps": "took longer than 0.5 s",
}


def test_each_broken_algorithm_faults_alone_and_the_healthy_card_keeps_trading(rig):
    ids: dict[str, int] = {}
    for kind in ("syntax_error", "import_error"):  # the service refuses these: write them as an old db would hold them
        with pytest.raises(ServiceError):
            rig.add("AAPL", kind, 1_000)
        ids[kind] = rig.system.create_instance("AAPL", kind, 1_000.0)
    for kind in ("raises", "returns_none", "returns_negative", "returns_huge", "sleeps"):
        ids[kind] = rig.add("AAPL", kind, 1_000)
    healthy = rig.add("AAPL", "healthy", 20_000)

    first = rig.step(minute(1))
    by_id = {o.instance_id: o for o in first.outcomes}
    assert by_id[healthy].action == "buy" and by_id[healthy].shares == 3
    assert {o.instance_id for o in first.faults} == set(ids.values())
    for kind, card in ids.items():
        assert BROKEN_REASONS[kind] in by_id[card].reason
        assert BROKEN_REASONS[kind] in rig.system.get_instance(card).faulted_reason
    cards = {c.instance_id: c for c in rig.service.cards()}
    for kind, card in ids.items():
        assert BROKEN_REASONS[kind] in cards[card].faulted_reason
    assert cards[healthy].faulted_reason is None
    assert {c["id"]: c["faulted"] for c in rig.service.status()["instances"]}[ids["sleeps"]] == \
        "took longer than 0.5 s"

    # Faulted cards are not called again: later minutes run the healthy card alone.
    for i in range(2, 6):
        result = rig.step(minute(i))
        assert [(o.instance_id, o.action) for o in result.outcomes] == [(healthy, "buy")]
    assert len(rig.system.get_transactions(healthy)) == 4
    assert all(rig.system.orders_for(card) == [] for card in ids.values())

    # Resumed, a card runs again from the next minute (and this one faults again).
    rig.service.resume_instance(ids["raises"])
    assert rig.system.get_instance(ids["raises"]).faulted_reason is None
    result = rig.step(minute(6))
    assert {o.instance_id: o.action for o in result.outcomes} == {ids["raises"]: "fault", healthy: "buy"}
    with pytest.raises(ServiceError, match="no running instance"):
        rig.service.resume_instance(12345)


def test_history_and_header_count_a_stopped_cards_realised_pnl(rig):
    card, shares = hold_shares(rig)
    assert rig.service.history() == ()
    rig.service.stop_instance(card, liquidate=True)
    rig.step(minute(3))  # the sell fills
    txs = rig.system.get_transactions(card)
    expected = sum(Decimal(str(t.price)) * t.shares * (1 if t.type == "sell" else -1) for t in txs)
    (stopped,) = rig.service.history()
    assert (stopped.instance_id, stopped.trade_count, stopped.shares_kept) == (card, len(txs), 0)
    assert stopped.realised_pnl == expected and expected != 0
    assert stopped.title.startswith("AAPL · ")
    account = rig.service.account()
    assert account.total_pnl == 0  # no running card
    assert account.stopped_pnl == expected and account.all_cards_pnl == expected


def test_a_quiet_minutes_publish_reuses_the_broker_cash_for_a_while(rig, monkeypatch):
    import app.engine.host.service as service_module

    broker = rig.parts.broker
    asked: list[Decimal] = []
    real_cash = broker.account_cash

    def counting_cash() -> Decimal:
        asked.append(real_cash())
        return asked[-1]

    monkeypatch.setattr(broker, "account_cash", counting_cash)
    service = rig.service
    first = service.account(fresh_cash=False)  # nothing read yet: asks
    assert len(asked) == 1 and first.available_cash is not None
    again = service.account(fresh_cash=False)
    assert len(asked) == 1 and again.available_cash == first.available_cash  # reused
    service.account()  # something changed (a fill, a new card): asks
    assert len(asked) == 2
    monkeypatch.setattr(service_module, "CASH_EVERY_S", 0.0)  # the cadence has passed
    service.account(fresh_cash=False)
    assert len(asked) == 3
