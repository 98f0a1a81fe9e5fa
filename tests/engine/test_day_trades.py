"""Day-trade awareness: the account's figures read with the account, shown by status, and the risk
guard's pattern-day-trader rule, before Alpaca refuses (real alpaca-py clients, fake Alpaca)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.alpaca.broker import AlpacaBroker
from app.engine.brokers.protocol import AccountRules
from app.engine.trading.guard import OrderRequest, describe_day_trading, day_trade_limited, refusal
from tests.engine.crash_child import FLIPPER_SOURCE, write_algorithm
from tests.engine.test_alpaca_broker import settings_for
from tests.fakes.alpaca_server import FakeAlpaca

SMALL_MARGIN = AccountRules(margin=True, equity=Decimal("20000"), pattern_day_trader=False, daytrade_count=3)
SELL = OrderRequest(side="sell", shares=5, price=Decimal("100"), instance_uninvested=Decimal("0"),
                    instance_shares=5, market_open=True, halted=False, broker_position=5,
                    completes_day_trade=True, account=SMALL_MARGIN)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_fourth_day_trade_on_a_small_margin_account_is_refused():
    reason = refusal(SELL)
    assert reason is not None and "3 in the last 5 sessions" in reason and "pattern-day-trader" in reason
    assert "$25,000" in reason


@pytest.mark.parametrize("change", [
    {"completes_day_trade": False},  # not a day trade (held overnight)
    {"account": replace(SMALL_MARGIN, daytrade_count=2)},  # the 3rd is still allowed
    {"account": replace(SMALL_MARGIN, margin=False)},  # cash accounts are not limited
    {"account": replace(SMALL_MARGIN, equity=Decimal("25000"))},  # $25k or more
    {"account": replace(SMALL_MARGIN, daytrade_count=None, pattern_day_trader=None)},  # not reported
    {"account": None},  # could not be read: Alpaca decides
])
def test_everything_else_may_day_trade(change):
    assert refusal(replace(SELL, **change)) is None


def test_limited_and_the_status_sentence():
    assert day_trade_limited(SMALL_MARGIN)
    assert describe_day_trading(SMALL_MARGIN) == ("margin account, equity $20,000.00; 3 day trade(s) in the "
                                                  "last 5 sessions; under $25,000: 0 more allowed")
    rich = replace(SMALL_MARGIN, equity=Decimal("30000"), pattern_day_trader=True)
    assert not day_trade_limited(rich)
    assert describe_day_trading(rich).endswith("(flagged pattern day trader); not limited")
    assert "not limited" in describe_day_trading(AccountRules(margin=False))


def test_account_rules_read_from_alpaca(fake_alpaca: FakeAlpaca, tmp_path: Path):
    broker = AlpacaBroker.from_settings(settings_for(fake_alpaca, tmp_path), timeout_s=5, retry_wait_s=0.01)
    assert broker.account_rules() == AccountRules(margin=True, equity=Decimal("100000.00"))
    fake_alpaca.account_type = "cash"
    assert broker.account_rules() == AccountRules(margin=False, equity=Decimal("100000.00"))
    fake_alpaca.account_type, fake_alpaca.pdt_fields = "margin", True
    fake_alpaca.set_cash(12_000)
    fake_alpaca.set_daytrade_count(2, pattern_day_trader=True)
    assert broker.account_rules() == AccountRules(margin=True, equity=Decimal("12000.00"),
                                                  pattern_day_trader=True, daytrade_count=2)
    fake_alpaca.pdt_fields = False  # Alpaca's answers since 2026-07-06
    assert broker.account_rules().daytrade_count is None


def test_the_guard_refuses_the_fourth_day_trade_before_alpaca_does(tmp_path: Path):
    from app.engine.marketdata.clock import ManualClock
    from app.engine.host.wiring import EngineParts
    from app.engine.host.service import EngineService
    from app.engine.marketdata.calendar import MarketCalendar
    from app.engine.system.settings import Settings
    from app.engine.sim.market import SimMarket
    from app.storage.market_store import MarketStore

    algos = write_algorithm(tmp_path / "algos", "flipper", FLIPPER_SOURCE)
    cal = MarketCalendar()
    scratch = MarketStore(tmp_path / "scratch.db")
    sim = SimMarket(cal, scratch, seed=3)
    bars = [b for d in (*cal.sessions_between(date(2024, 5, 28), date(2024, 6, 3)), date(2024, 6, 4))
            for b in sim.session_bars("AAPL", d)]
    scratch.close()
    clock = ManualClock(utc(2024, 6, 4, 15, 0, 2))
    with FakeAlpaca(cash=20_000, fill_delay=0.05, account_type="margin", pdt_fields=True) as fake:
        fake.add_bars("AAPL", [tuple(b) for b in bars])
        fake.set_now(clock.now)
        fake.set_daytrade_count(3)
        settings = Settings(api_key=fake.key, secret=fake.secret, paper=True, data_root=tmp_path / "data",
                            trading_url=fake.origin, data_url=fake.origin, stream_url=fake.stream_url,
                            algorithm_dirs=(algos,))
        broker = AlpacaBroker.from_settings(settings, timeout_s=5, retry_wait_s=0.05)
        parts = EngineParts.build(settings, clock=clock, broker=broker)
        try:
            service = EngineService(parts)
            card = service.create_instance("AAPL", "flipper", "5000")
            assert service.status()["day_trading"] == {
                "margin": True, "equity": "20000.00", "pattern_day_trader": False, "daytrade_count": 3,
                "limited": True, "summary": describe_day_trading(broker.account_rules())}
            # The settings panel shows the same sentence.
            assert service.wall_info().day_trades == describe_day_trading(broker.account_rules())
            assert "0 more allowed" in service.wall_info().day_trades

            def step(minute: datetime):
                clock.set(minute + timedelta(seconds=2))
                parts.feed.set_symbols(["AAPL"])
                parts.feed.poll(clock.now())
                return parts.cycle.run_minute(minute)

            (bought,) = step(utc(2024, 6, 4, 15, 1)).fills
            sells_before = fake.count("/v2/orders", "POST")
            second = step(utc(2024, 6, 4, 15, 2))
            (outcome,) = second.outcomes
            assert outcome.action == "refused" and "pattern-day-trader" in outcome.reason
            assert fake.count("/v2/orders", "POST") == sells_before  # never sent: Alpaca would say 403
            (snapshot,) = service.cards()
            assert "pattern-day-trader" in snapshot.refused_reason and snapshot.faulted_reason is None
            assert snapshot.shares == bought.shares

            fake.set_cash(30_000)  # equity now over $25,000: the same sell may go
            third = step(utc(2024, 6, 4, 15, 3))
            (sold,) = third.fills
            assert (sold.side, sold.shares) == ("sell", bought.shares)
            assert fake.daytrade_count == 4 and parts.system.get_instance(card).faulted_reason is None
        finally:
            parts.close()


def test_status_command_prints_the_day_trade_line(tmp_path: Path):
    from tests.cli_helpers import run_cli

    data = tmp_path / "data"
    data.mkdir()
    done = run_cli(data, "status", XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("day trades ")]
    assert line == ("day trades cash account; the broker reports no day-trade count, so day trades are "
                    "not limited")  # the simulator is a cash account
