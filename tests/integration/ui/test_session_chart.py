"""The detail view's chart: a card's price over several sessions with its fills where they happened.

Built by the engine's real chart builder from a real stocks.db and the exchange calendar (a weekend
and an early close in the range), drawn by the real widget.
"""

from __future__ import annotations

from datetime import date

from app.engine.marketdata.calendar import MarketCalendar
from app.engine.portfolio.chart import card_chart
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource, TransactionRecord
from app.storage.timefmt import from_epoch
from app.ui.session_chart import SessionChart

CAL = MarketCalendar()
DAYS = CAL.sessions_between(date(2024, 11, 26), date(2024, 12, 3))  # Thanksgiving, an early close, a weekend


def _text(ts: int) -> str:
    return from_epoch(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_fills_of_several_sessions_sit_on_the_line_at_their_minute(qtbot, tmp_path):
    assert len(DAYS) == 5 and CAL.session_minutes(date(2024, 11, 29)).__len__() == 210
    first_open = CAL.session_minutes(DAYS[0])[0]
    last_close = CAL.session_minutes(DAYS[-1])[-1]
    early_last = CAL.session_minutes(date(2024, 11, 29))[-1]
    with MarketStore(tmp_path / "stocks.db") as store:
        for k, day in enumerate(DAYS):
            bars = [Bar(ts, 100, 200, 1, 100 + k + (i % 7) * 0.1, 100) for i, ts in enumerate(CAL.session_minutes(day))]
            store.upsert_bars("NVDA", bars, source=BarSource.ALPACA)
        fills = (TransactionRecord(1, 1, "buy", 5, 100.0, _text(first_open + 3), None),
                 TransactionRecord(2, 1, "sell", 5, 102.0, _text(early_last + 3), None),
                 TransactionRecord(3, 1, "buy", 5, 104.0, _text(last_close + 3), None))
        chart = card_chart(store, CAL, "NVDA", fills, from_epoch(last_close + 120), sessions=5)
    assert chart is not None
    assert [label for _x, label in chart.sessions] == ["Tue 26 Nov", "Wed 27 Nov", "Fri 29 Nov", "Mon 2 Dec",
                                                       "Tue 3 Dec"]
    assert len(chart.closes) <= 480 and chart.times[0] == 0
    # Trading time only: the axis is 4 full sessions and an early close long, nights take no room.
    assert chart.span[1] == (4 * 390 + 210) * 60 - 60
    assert [m.ts for m in chart.markers] == [0, (2 * 390 + 209) * 60, chart.span[1]]

    widget = SessionChart()
    qtbot.addWidget(widget)
    widget.resize(500, 200)
    widget.set_chart(chart)
    widget.show()
    qtbot.waitExposed(widget)
    xs = widget.line_xs()
    marks = widget.marker_positions()
    assert len(marks) == 3
    assert abs(marks[0][0] - xs[0]) < 1 and abs(marks[-1][0] - xs[-1]) < 1  # first and last minute
    assert xs[0] <= marks[1][0] <= xs[-1]
    assert widget.session_labels[-1] == "Tue 3 Dec"


def test_no_bars_no_chart(tmp_path):
    with MarketStore(tmp_path / "stocks.db") as store:
        assert card_chart(store, CAL, "NVDA", (), from_epoch(CAL.session_minutes(DAYS[0])[0])) is None
