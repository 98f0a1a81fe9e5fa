"""Trade markers sit where their trades are: line and markers share one time axis (issue 14 item 4).

The cards are built by the engine's real card builder from a real stocks.db and the real exchange
calendar, then drawn by the real Card widget.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from PySide6.QtCore import QSize

from app.engine.portfolio.cards import SPARKLINE_POINTS, build_cards
from app.engine.portfolio.ledger import Holding
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.portfolio.money import card_figures
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource, InstanceRecord, TransactionRecord
from app.storage.timefmt import from_epoch, to_epoch
from app.ui import theme
from app.ui.card import Card

CAL = MarketCalendar()
FULL = date(2025, 3, 14)  # 390 minutes
EARLY = date(2024, 11, 29)  # day after Thanksgiving: 13:00 ET close, 210 minutes
METRICS = theme.Metrics.for_size(QSize(800, 480))


def _utc_text(ts: int) -> str:
    return from_epoch(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instance(created: datetime) -> InstanceRecord:
    return InstanceRecord(1, "AAPL_sma", "sma_crossover", "AAPL", 10000.0, "running",
                          created.strftime("%Y-%m-%dT%H:%M:%SZ"), None, "{}", None)


def _card(qtbot, tmp_path, day: date, fills: list[tuple[int, str]], *, every: int = 1, upto: int | None = None,
          width: int = 224):
    """A card for ``day`` with bars every ``every`` minutes (up to minute index ``upto``) and fills at
    (minute index, side), each stamped 3 s into its minute as a real fill is."""
    minutes = CAL.session_minutes(day)
    shown = minutes[: upto + 1] if upto is not None else minutes
    bars = [Bar(ts, 100.0, 200.0, 1.0, 100 + (i % 17) * 0.1, 1000)
            for i, ts in enumerate(shown) if i % every == 0 or ts == shown[-1]]
    txs = tuple(TransactionRecord(k + 1, 1, side, 1, 100.5, _utc_text(minutes[index] + 3), None)
                for k, (index, side) in enumerate(fills))
    figures = card_figures(10000, txs, None)
    holding = Holding(txs, figures.shares, figures.invested)
    with MarketStore(tmp_path / f"stocks-{day}-{every}-{upto}.db") as store:
        store.upsert_bars("AAPL", bars, source=BarSource.ALPACA)
        now = from_epoch(shown[-1] + 90)
        (snap,) = build_cards({1: holding}, store, CAL, now, [_instance(from_epoch(minutes[0] - 86_400))],
                              {}, {})
    card = Card(snap, METRICS)
    qtbot.addWidget(card)
    card.resize(METRICS.card_width, 380)
    card.show()
    qtbot.waitExposed(card)
    return card, snap, minutes


def _x_of_minute(card, minutes, index) -> float:
    spark = card.sparkline
    return (minutes[index] - minutes[0]) / (minutes[-1] - minutes[0]) * (spark.width() - 1)


@pytest.mark.parametrize("day", [FULL, EARLY], ids=["full-session", "early-close"])
def test_fills_in_the_first_and_last_minute_sit_at_the_ends_of_the_line(qtbot, tmp_path, day):
    count = CAL.minute_count(day)
    card, snap, minutes = _card(qtbot, tmp_path, day, [(0, "buy"), (count - 1, "sell")])
    spark = card.sparkline
    assert len(snap.sparkline) == min(count, SPARKLINE_POINTS)  # the full session is downsampled
    xs = spark.line_xs()
    marks = spark.marker_positions()
    assert [side for _, _, side in marks] == ["buy", "sell"]  # both drawn
    assert xs[0] == pytest.approx(0) and marks[0][0] == pytest.approx(0)
    assert xs[-1] == pytest.approx(spark.width() - 1)
    assert marks[1][0] == pytest.approx(xs[-1])


@pytest.mark.parametrize("day", [FULL, EARLY], ids=["full-session", "early-close"])
@pytest.mark.parametrize("every", [1, 3], ids=["every-minute", "iex-gaps"])
def test_every_marker_lies_on_the_line_at_its_minute(qtbot, tmp_path, day, every):
    count = CAL.minute_count(day)
    picks = [0, 1, count // 3, count // 2, count - 2, count - 1]
    card, snap, minutes = _card(qtbot, tmp_path, day, [(i, "buy" if k % 2 else "sell") for k, i in enumerate(picks)],
                                every=every)
    spark = card.sparkline
    xs = spark.line_xs()
    times = snap.sparkline_times
    marks = spark.marker_positions()
    assert len(marks) == len(picks)
    for (x, _y, _side), index in zip(marks, picks):
        assert x == pytest.approx(_x_of_minute(card, minutes, index))
        # Between the two drawn line points around its minute (the line is downsampled).
        before = max(k for k, t in enumerate(times) if t <= minutes[index])
        after = min((k for k, t in enumerate(times) if t >= minutes[index]), default=before)
        assert xs[before] - 1e-6 <= x <= xs[after] + 1e-6


@pytest.mark.parametrize("upto", [0, 45, 200, 389])
def test_a_session_in_progress_keeps_the_time_of_day(qtbot, tmp_path, upto):
    """Mid-session the line covers the morning only; a fill in the latest minute sits at the line's end."""
    card, snap, minutes = _card(qtbot, tmp_path, FULL, [(upto, "buy")], upto=upto)
    spark = card.sparkline
    marks = spark.marker_positions()
    if upto == 0:
        assert len(snap.sparkline) == 1 and marks == []  # one close is not a line yet
        return
    assert len(marks) == 1
    assert marks[0][0] == pytest.approx(spark.line_xs()[-1])
    assert marks[0][0] == pytest.approx(upto / 389 * (spark.width() - 1))


def test_fills_of_another_session_are_not_drawn(qtbot, tmp_path):
    card, _snap, minutes = _card(qtbot, tmp_path, FULL, [(10, "buy")])
    spark = card.sparkline
    assert spark.x_of(minutes[0] - 86_400) is None  # yesterday
    assert spark.x_of(minutes[-1] + 3600) is None  # after the close
    assert spark.x_of(minutes[-1] + 60 + 4) == pytest.approx(spark.width() - 1)  # stamped just after it


def test_day_pnl_counts_only_the_session(tmp_path):
    """Bought 10 yesterday at 100 (closed at 101), 5 more today at 102, price now 103."""
    day = FULL
    minutes = CAL.session_minutes(day)
    yesterday = CAL.session_minutes(CAL.previous_session(day))
    with MarketStore(tmp_path / "stocks.db") as store:
        store.upsert_bars("AAPL", [Bar(yesterday[-1], 101, 101, 101, 101.0, 1),
                                   Bar(minutes[0], 102, 102, 102, 102.0, 1),
                                   Bar(minutes[5], 103, 103, 103, 103.0, 1)], source=BarSource.ALPACA)
        txs = (TransactionRecord(1, 1, "buy", 10, 100.0, _utc_text(yesterday[100] + 3), None),
               TransactionRecord(2, 1, "buy", 5, 102.0, _utc_text(minutes[1] + 3), None))
        figures = card_figures(10000, txs, None)
        holding = Holding(txs, figures.shares, figures.invested)
        now = from_epoch(minutes[6] + 30)
        old = _instance(datetime(2025, 3, 1, tzinfo=timezone.utc))
        (snap,) = build_cards({1: holding}, store, CAL, now, [old], {}, {})
        # 10 shares 101 → 103 (+20), 5 shares 102 → 103 (+5).
        assert snap.day_pnl == Decimal("25")
        assert snap.pnl == Decimal("35")
        new = _instance(from_epoch(minutes[0] + 30))  # created this morning: all of its P&L is today's
        (snap,) = build_cards({1: holding}, store, CAL, now, [new], {}, {})
        assert snap.day_pnl == snap.pnl
    assert to_epoch(now) > minutes[5]


def test_bars_after_now_are_not_shown_and_do_not_break_the_cards(tmp_path):
    # A fast simulation writes bars ahead of the wall clock; the CLI then builds cards at the wall's
    # "now", before the latest stored session (it raised "range start … is after its end").
    day = FULL
    previous = CAL.previous_session(day)
    bars = [Bar(ts, 100.0, 200.0, 1.0, 101.0, 10) for ts in CAL.session_minutes(previous)]
    bars += [Bar(ts, 100.0, 200.0, 1.0, 150.0, 10) for ts in CAL.session_minutes(day)]
    with MarketStore(tmp_path / "stocks.db") as store:
        store.upsert_bars("AAPL", bars, source=BarSource.ALPACA)
        now = from_epoch(CAL.session_minutes(previous)[-1] + 3600)  # the evening before ``day``
        (snap,) = build_cards({1: Holding()}, store, CAL, now, [_instance(from_epoch(to_epoch(now) - 86_400 * 3))],
                              {}, {})
    assert snap.price == Decimal("101.0") and len(snap.sparkline) > 0
