"""The evening check's comparison: pairing, slippage, divergence, its line of text and its JSON."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.engine.backtest.day_check import (DayCheck, DayFill, compare_day, live_day_fills, threshold_for)
from app.engine.backtest.evening import last_closed_session
from app.engine.marketdata.calendar import MarketCalendar
from app.storage.records import TransactionRecord

DAY = date(2024, 6, 4)
T0 = datetime(2024, 6, 4, 14, 0, tzinfo=timezone.utc)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fill(minutes: int | None, side: str, shares: int, price: str) -> DayFill:
    return DayFill(None if minutes is None else at(minutes), side, shares, Decimal(price))


def check(live, backtest, live_value="1000", backtest_value="1000", threshold="5", **kw) -> DayCheck:
    return compare_day(7, DAY, live, backtest, live_value=Decimal(live_value), backtest_value=Decimal(backtest_value),
                       threshold=Decimal(threshold), **kw)


def test_same_decisions_pair_up_and_slippage_is_signed_so_that_worse_is_positive() -> None:
    result = check([fill(0, "buy", 10, "100.10"), fill(5, "sell", 10, "99.90")],
                   [fill(0, "buy", 10, "100.00"), fill(5, "sell", 10, "100.00")])
    assert [p.slippage_bps for p in result.pairs] == [pytest.approx(10.0), pytest.approx(10.0)]
    assert result.slippage_bps == pytest.approx(10.0)
    assert not result.missed and not result.added and not result.diverged
    better = check([fill(0, "buy", 10, "99.90")], [fill(0, "buy", 10, "100.00")])
    assert better.slippage_bps == pytest.approx(-10.0)


def test_a_fill_only_one_side_made_is_missed_or_added_and_diverges() -> None:
    result = check([fill(0, "buy", 10, "100"), fill(9, "sell", 10, "101")],
                   [fill(0, "buy", 10, "100"), fill(3, "sell", 10, "102")])
    assert [f.decided_at for f in result.missed] == [at(3)]
    assert [f.decided_at for f in result.added] == [at(9)]
    assert result.diverged and result.live_fills == 2
    assert "1 missed" in result.text() and "1 added" in result.text()
    # A live fill whose order id says nothing (adopted from the broker) never pairs.
    adopted = check([fill(None, "buy", 10, "100")], [fill(0, "buy", 10, "100")])
    assert len(adopted.added) == 1 and len(adopted.missed) == 1


def test_values_apart_by_more_than_the_threshold_diverge_and_not_at_it() -> None:
    assert not check([], [], live_value="995", backtest_value="1000", threshold="5").diverged
    assert check([], [], live_value="994.99", backtest_value="1000", threshold="5").diverged
    assert threshold_for(Decimal("10000")) == Decimal("50.00")  # 0.5 % of the capital


def test_decisions_still_open_are_neither_paired_nor_missed() -> None:
    result = check([fill(0, "buy", 10, "100")], [fill(0, "buy", 10, "100"), fill(389, "sell", 10, "101")],
                   pending=[(at(389), "sell")])
    assert result.pending == 1 and not result.missed and not result.diverged
    assert result.text().endswith("1 still open")


def test_the_line_reads_like_the_issue_asks() -> None:
    result = check([fill(0, "buy", 10, "100.04"), fill(5, "sell", 10, "100")],
                   [fill(0, "buy", 10, "100"), fill(5, "sell", 10, "100")], live_value="995.90", backtest_value="1000")
    assert result.text() == "live -$4.10 vs backtest, 2 fills, slippage 2.0 bps"
    assert check([], []).text() == "live $0.00 vs backtest, 0 fills"
    failed = DayCheck(7, DAY, error="no NVDA bars between 2024-06-04 and 2024-06-04")
    assert failed.text().startswith("no backtest comparison: ") and not failed.diverged


def test_json_round_trip_and_refusal_of_other_text() -> None:
    result = check([fill(0, "buy", 10, "100.10"), fill(9, "sell", 3, "101")],
                   [fill(0, "buy", 10, "100.00"), fill(4, "sell", 10, "102")], live_value="990.5",
                   pending=[(at(300), "buy")])
    assert DayCheck.from_json(result.to_json()) == result
    for text in ("", "{}", "[1, 2]", '{"card": "x"}'):
        with pytest.raises(ValueError, match="not a day check"):
            DayCheck.from_json(text)


def test_partial_fills_of_one_order_count_as_one_fill_at_their_average_price() -> None:
    minute = {"c-1": at(0), "c-2": at(4)}
    txs = [TransactionRecord(1, 7, "buy", 4, 100.0, "2024-06-04T14:00:30Z", "c-1"),
           TransactionRecord(2, 7, "buy", 6, 101.0, "2024-06-04T14:00:40Z", "c-1"),
           TransactionRecord(3, 7, "sell", 10, 102.0, "2024-06-04T14:05:00Z", "c-2"),
           TransactionRecord(4, 7, "sell", 1, 102.0, "2024-06-04T14:06:00Z", None),
           TransactionRecord(5, 7, "buy", 1, 102.0, "2024-06-04T14:07:00Z", None)]
    fills = live_day_fills(txs, lambda coid: minute.get(coid or ""))
    assert fills == [DayFill(at(0), "buy", 10, Decimal("100.6000")), DayFill(at(4), "sell", 10, Decimal("102.0000")),
                     DayFill(None, "sell", 1, Decimal("102.0000")), DayFill(None, "buy", 1, Decimal("102.0000"))]


def test_the_session_to_check_is_the_last_one_closed() -> None:
    cal = MarketCalendar()
    close = cal.session_close(DAY)  # 20:00 UTC in June
    assert last_closed_session(cal, close) == DAY
    assert last_closed_session(cal, close - timedelta(seconds=1)) == date(2024, 6, 3)
    assert last_closed_session(cal, datetime(2024, 6, 8, 12, tzinfo=timezone.utc)) == date(2024, 6, 7)  # Saturday
    assert last_closed_session(cal, datetime(2024, 7, 5, 1, tzinfo=timezone.utc)) == date(2024, 7, 3)  # after the 4th
