"""AlpacaHistory and AlpacaFeed through the real alpaca-py data client against the fake Alpaca."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.engine.alpaca.clients import make_data_client
from app.engine.alpaca.feed import AlpacaFeed
from app.engine.alpaca.history import AlpacaHistory, MarketDataError, MarketDataUnavailable
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.system.settings import Settings
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource
from tests.fakes.alpaca_server import FakeAlpaca

CAL = MarketCalendar()
LATER = datetime(2025, 6, 1, tzinfo=timezone.utc)  # every 2024 session long finished
SESSIONS_2024 = CAL.sessions_between(date(2024, 1, 1), date(2024, 12, 31))


def price(ts: int) -> float:
    return 100.0 + (ts // 60) % 97 / 10


def bars_for(sessions, skip=()) -> list[tuple]:
    rows = []
    for session in sessions:
        for ts in CAL.session_minutes(session):
            if ts not in skip:
                p = price(ts)
                rows.append((ts, p, p + 0.5, p - 0.5, p + 0.25, 100 + ts % 50))
    return rows


def settings_for(fake: FakeAlpaca, tmp_path: Path, **over) -> Settings:
    values = dict(api_key=fake.key, secret=fake.secret, trading_url=fake.origin, data_url=fake.origin,
                  data_root=tmp_path)
    values.update(over)
    return Settings(**values)


@pytest.fixture
def store(tmp_path):
    with MarketStore(tmp_path / "stocks.db", minute_filter=CAL.is_session_minute) as s:
        yield s


def make_history(fake, tmp_path, store, now=LATER, **kw) -> AlpacaHistory:
    client = make_data_client(settings_for(fake, tmp_path), timeout_s=3.0, retry_wait_s=0.01)
    return AlpacaHistory(client, store, CAL, "iex", now=lambda: now, **kw)


def bar_requests(fake):
    return fake.requests("/v2/stocks/bars")


def test_three_page_backfill_follows_page_tokens(fake_alpaca, tmp_path, store):
    sessions = SESSIONS_2024[:60]
    fake_alpaca.add_bars("AAPL", bars_for(sessions))
    pre = CAL.session_open(sessions[0]) - timedelta(hours=1)  # pre-market bar: never kept
    fake_alpaca.add_bars("AAPL", [(int(pre.timestamp()), 1, 2, 0.5, 1.5, 10)])
    history = make_history(fake_alpaca, tmp_path, store, batch_sessions=60)
    calls = []
    summary = history.backfill("AAPL", sessions[0], sessions[-1], progress=lambda d, t: calls.append((d, t)))
    assert summary.sessions_fetched == 60 and summary.sessions_present == 0
    assert summary.bars_stored == store.bar_count("AAPL") == 60 * 390 > 20_000
    requests = bar_requests(fake_alpaca)
    assert len(requests) == 3  # 10,000 + 10,000 + 3,400
    assert [bool(r.param("page_token")) for r in requests] == [False, True, True]
    assert {r.param("feed") for r in requests} == {"iex"} and {r.param("timeframe") for r in requests} == {"1Min"}
    assert calls[0] == (0, 60) and calls[-1] == (60, 60)
    first = store.bars_between("AAPL", 0, 2**40)[0]
    ts = int(CAL.session_open(sessions[0]).timestamp())
    assert first == Bar(ts, price(ts), price(ts) + 0.5, price(ts) - 0.5, price(ts) + 0.25, 100 + ts % 50)


def test_batches_of_consecutive_sessions_and_coverage_prevents_refetch(fake_alpaca, tmp_path, store):
    sessions = SESSIONS_2024[:60]
    fake_alpaca.add_bars("AAPL", bars_for(sessions))
    history = make_history(fake_alpaca, tmp_path, store)
    history.backfill("AAPL", sessions[10], sessions[12])  # covered already: splits the rest in two
    fake_alpaca.clear_log()
    summary = history.backfill("AAPL", sessions[0], sessions[-1])
    assert (summary.sessions_fetched, summary.sessions_present) == (57, 3)
    starts = [r.param("start")[:10] for r in bar_requests(fake_alpaca)]
    assert starts == [str(sessions[0]), str(sessions[13]), str(sessions[38])]  # 10, then 25 + 22
    assert store.bar_count("AAPL") == 60 * 390
    fake_alpaca.clear_log()
    again = history.backfill("AAPL", sessions[0], sessions[-1])
    assert (again.sessions_fetched, again.bars_stored, again.sessions_present) == (0, 0, 60)
    assert bar_requests(fake_alpaca) == []


def test_session_without_bars_is_covered_and_not_refetched(fake_alpaca, tmp_path, store):
    sessions = SESSIONS_2024[:5]
    fake_alpaca.add_bars("AAPL", bars_for(sessions[:2] + sessions[3:]))  # no IEX trades on sessions[2]
    history = make_history(fake_alpaca, tmp_path, store)
    assert history.backfill("AAPL", sessions[0], sessions[-1]).bars_stored == 4 * 390
    fake_alpaca.clear_log()
    assert history.backfill("AAPL", sessions[2], sessions[2]).sessions_present == 1
    assert bar_requests(fake_alpaca) == []


def test_session_in_progress_is_stored_but_never_covered(fake_alpaca, tmp_path, store):
    day = SESSIONS_2024[100]
    fake_alpaca.add_bars("AAPL", bars_for([CAL.previous_session(day), day]))
    now = CAL.session_open(day) + timedelta(minutes=30, seconds=20)
    history = make_history(fake_alpaca, tmp_path, store, now=now)
    summary = history.backfill("AAPL", CAL.previous_session(day), day + timedelta(days=7))
    assert summary.sessions_fetched == 2  # later sessions have not opened: ignored
    assert store.bar_count("AAPL") == 390 + 30  # only minutes completed by now
    assert store.covered_sessions("AAPL", day, day) == set()
    fake_alpaca.clear_log()
    later = now + timedelta(minutes=10)
    history.backfill("AAPL", day, day, now=later)  # only the minutes after what was fetched
    (request,) = bar_requests(fake_alpaca)
    assert request.param("start").startswith((now.replace(second=0)).strftime("%Y-%m-%dT%H:%M"))
    assert store.bar_count("AAPL") == 390 + 40


def test_last_n_bars_walks_back_and_uses_coverage(fake_alpaca, tmp_path, store):
    sessions = SESSIONS_2024[:30]
    fake_alpaca.add_bars("AAPL", bars_for(sessions))
    history = make_history(fake_alpaca, tmp_path, store)
    before = CAL.session_open(sessions[20]) + timedelta(minutes=100)
    bars = history.get_data_for_algorithm("AAPL", "last_n_bars", n=1000, before_timestamp=before)
    assert len(bars) == 1000
    assert bars[-1].ts == int(before.timestamp()) - 60
    assert all(a.ts < b.ts for a, b in zip(bars, bars[1:]))
    assert store.covered_sessions("AAPL", sessions[0], sessions[-1]) <= set(sessions[:21])
    fake_alpaca.clear_log()
    text = before.strftime("%Y-%m-%dT%H:%M:%SZ")
    again = history.get_data_for_algorithm("AAPL", "last_n_bars", n=1000, before_timestamp=text)
    assert again == bars and bar_requests(fake_alpaca) == []
    assert history.get_data_for_algorithm("AAPL", "last_n_bars", n=200, before_timestamp=before) == bars[-200:]


def test_last_n_bars_stops_at_the_lookback_cap(fake_alpaca, tmp_path, store):
    history = make_history(fake_alpaca, tmp_path, store)  # the fake has no bars at all
    bars = history.get_data_for_algorithm("AAPL", "last_n_bars", n=200,
                                          before_timestamp=CAL.session_open(SESSIONS_2024[100]))
    assert bars == []
    assert 1 <= len(bar_requests(fake_alpaca)) <= 5


def test_time_range_fetches_only_missing_sessions(fake_alpaca, tmp_path, store):
    sessions = SESSIONS_2024[:10]
    fake_alpaca.add_bars("AAPL", bars_for(sessions))
    history = make_history(fake_alpaca, tmp_path, store)
    history.backfill("AAPL", sessions[0], sessions[4])
    fake_alpaca.clear_log()
    start = CAL.session_open(sessions[3]) + timedelta(minutes=5)
    end = CAL.session_open(sessions[7]) + timedelta(minutes=9)
    bars = history.get_data_for_algorithm("AAPL", "time_range", start=start, end=end)
    assert bars[0].ts == int(start.timestamp()) and bars[-1].ts == int(end.timestamp())
    assert len(bars) == 390 * 3 + 385 + 10
    (request,) = bar_requests(fake_alpaca)
    assert request.param("start").startswith(str(sessions[5]))


def test_bad_requests_are_clear(fake_alpaca, tmp_path, store):
    history = make_history(fake_alpaca, tmp_path, store)
    with pytest.raises(ValueError, match="unknown requirement type"):
        history.get_data_for_algorithm("AAPL", "everything")
    with pytest.raises(ValueError, match="before_timestamp"):
        history.get_data_for_algorithm("AAPL", "last_n_bars", before_timestamp="yesterday")
    with pytest.raises(ValueError, match="time_range takes start and end"):
        history.get_data_for_algorithm("AAPL", "time_range", start=LATER)
    with pytest.raises(ValueError, match="feed"):
        AlpacaHistory(None, store, CAL, "sip-fast")
    assert bar_requests(fake_alpaca) == []


def test_fill_gap_refetches_inside_a_covered_session(fake_alpaca, tmp_path, store):
    day = SESSIONS_2024[5]
    minutes = CAL.session_minutes(day)
    gap = set(minutes[100:110])
    fake_alpaca.add_bars("AAPL", bars_for([day], skip=gap))
    history = make_history(fake_alpaca, tmp_path, store)
    history.backfill("AAPL", day, day)
    assert store.bar_count("AAPL") == 380
    fake_alpaca.add_bars("AAPL", [b for b in bars_for([day]) if b[0] in gap])  # arrived late
    got = history.fill_gap("AAPL", minutes[99], datetime.fromtimestamp(minutes[110], timezone.utc))
    assert [b.ts for b in got] == minutes[99:111]
    assert store.bar_count("AAPL") == 390


def test_hung_data_request_is_unavailable_within_the_timeout(fake_alpaca, tmp_path, store):
    fake_alpaca.faults.hang("/v2/stocks/bars")
    history = make_history(fake_alpaca, tmp_path, store)
    with pytest.raises(MarketDataUnavailable, match="did not answer"):
        history.backfill("AAPL", SESSIONS_2024[0], SESSIONS_2024[1])
    # It returned while the server still holds the request: the timeout works (no clock assert).
    fake_alpaca.faults.release_hangs()
    assert store.covered_sessions("AAPL", SESSIONS_2024[0], SESSIONS_2024[1]) == set()


def test_keys_never_in_errors_or_logs(tmp_path, store, caplog):
    caplog.set_level(logging.DEBUG)
    key, secret = "AKDATAKEY4242", "DATA-SECRET-987654"
    with FakeAlpaca(key=key, secret=secret) as fake:
        settings = settings_for(fake, tmp_path, secret="bad" + secret)
        history = AlpacaHistory.from_settings(settings, store, CAL, retry_wait_s=0.01)
        with pytest.raises(MarketDataError) as info:
            history.backfill("AAPL", SESSIONS_2024[0], SESSIONS_2024[0])
    text = str(info.value) + repr(info.value) + caplog.text
    assert "ALPACA_API_KEY" in str(info.value)
    assert key not in text and secret not in text


# -- the feed ---------------------------------------------------------------------------------


def test_feed_ensure_ready_loads_recent_sessions_and_today(fake_alpaca, tmp_path, store):
    day = SESSIONS_2024[50]
    fake_alpaca.add_bars("AAPL", bars_for(SESSIONS_2024[40:51]))
    now = CAL.session_open(day) + timedelta(minutes=60, seconds=5)
    feed = AlpacaFeed(make_history(fake_alpaca, tmp_path, store, now=now), store, CAL)
    assert feed.simulated is False
    feed.ensure_ready(["AAPL"], now)
    assert store.bar_count("AAPL") == 5 * 390 + 60
    assert store.covered_sessions("AAPL", SESSIONS_2024[40], day) == set(SESSIONS_2024[45:50])


def test_feed_poll_fills_a_stream_gap_once_a_minute(fake_alpaca, tmp_path, store, caplog):
    day = SESSIONS_2024[50]
    minutes = CAL.session_minutes(day)
    fake_alpaca.add_bars("AAPL", bars_for([day]))
    store.upsert_bars("AAPL", [Bar(*row) for row in bars_for([day]) if row[0] <= minutes[29]],
                      source=BarSource.ALPACA)  # stream stopped
    now = datetime.fromtimestamp(minutes[40] + 2, timezone.utc)
    feed = AlpacaFeed(make_history(fake_alpaca, tmp_path, store, now=now), store, CAL)
    feed.set_symbols(["AAPL"])
    got = feed.poll(now)
    assert [(s, b.ts) for s, b in got] == [("AAPL", ts) for ts in minutes[30:40]]
    assert store.latest_bar("AAPL").ts == minutes[39]
    fake_alpaca.clear_log()
    assert feed.poll(now + timedelta(seconds=20)) == []  # up to date (and rate-limited)
    assert feed.poll(now + timedelta(minutes=2)) == []  # 2 minutes behind: the stream may catch up
    assert bar_requests(fake_alpaca) == []
    got = feed.poll(now + timedelta(minutes=4))
    assert [b.ts for _, b in got] == minutes[40:44]


def test_feed_poll_outside_session_and_failures(fake_alpaca, tmp_path, store, caplog):
    day = SESSIONS_2024[50]
    feed = AlpacaFeed(make_history(fake_alpaca, tmp_path, store), store, CAL)
    feed.set_symbols(["AAPL"])
    assert feed.poll(CAL.session_open(day) - timedelta(hours=2)) == []
    fake_alpaca.faults.server_errors("/v2/stocks/bars", 500)
    now = CAL.session_open(day) + timedelta(minutes=10)
    assert feed.poll(now) == []
    assert "could not fill the AAPL bar gap" in caplog.text
    fake_alpaca.add_bars("AAPL", bars_for([day]))
    assert feed.poll(now + timedelta(seconds=30)) == []  # rate-limited
    assert len(feed.poll(now + timedelta(seconds=61))) == 11  # minutes 0-10 have completed


def test_feed_ensure_ready_failure_is_retried_by_poll(fake_alpaca, tmp_path, store):
    day = SESSIONS_2024[50]
    fake_alpaca.add_bars("AAPL", bars_for(SESSIONS_2024[45:50]))
    fake_alpaca.faults.server_errors("/v2/stocks/bars", 503)
    now = CAL.session_open(day) - timedelta(hours=3)
    feed = AlpacaFeed(make_history(fake_alpaca, tmp_path, store, now=now), store, CAL)
    feed.set_symbols(["AAPL"])
    feed.ensure_ready(["AAPL"], now)
    assert store.bar_count("AAPL") == 0
    feed.poll(now + timedelta(seconds=61))
    assert store.bar_count("AAPL") == 5 * 390


def test_parser_reads_other_time_forms_and_keeps_session_minutes_only():
    from app.engine.alpaca.history import _BarParser

    day = SESSIONS_2024[0]
    open_ts = int(CAL.session_open(day).timestamp())
    bar = {"o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 7}
    rows = [
        {**bar, "t": "2024-01-02T14:29:00Z"},  # pre-market: dropped
        {**bar, "t": "2024-01-02T14:30:00Z"},
        {**bar, "t": "2024-01-02T09:31:00-05:00"},  # an offset form: the slow path
        {**bar, "t": "2024-01-02T14:32:00.000Z"},
        {**bar, "t": "2024-01-02T21:00:00Z"},  # the close itself is not a bar minute
        {**bar, "t": "2024-01-01T15:00:00Z"},  # a holiday
    ]
    got = _BarParser(CAL).parse(rows, 0, 2**40)
    assert [b.ts for b in got] == [open_ts, open_ts + 60, open_ts + 120]
    assert got[0] == Bar(open_ts, 1.0, 2.0, 0.5, 1.5, 7)
    assert _BarParser(CAL).parse(rows, open_ts + 60, open_ts + 60)[0].ts == open_ts + 60


def test_sip_feed_is_sent_and_a_plan_refusal_explains_itself(fake_alpaca, tmp_path, store):
    day = SESSIONS_2024[50]
    fake_alpaca.add_bars("AAPL", bars_for([day]))
    now = CAL.session_open(day) + timedelta(minutes=30)
    fake_alpaca.set_now(now)  # free plan: no SIP bars from the last 15 minutes
    client = make_data_client(settings_for(fake_alpaca, tmp_path, feed="sip"), retry_wait_s=0.01)
    history = AlpacaHistory(client, store, CAL, "sip", now=lambda: now)
    with pytest.raises(MarketDataError, match="ALPACA_FEED=iex"):
        history.backfill("AAPL", day, day)
    assert bar_requests(fake_alpaca)[0].param("feed") == "sip"
    got = history.fetch_bars("AAPL", CAL.session_open(day), now - timedelta(minutes=20))
    assert len(got) == 11 and store.bar_count("AAPL") == 0  # fetch_bars does not store
