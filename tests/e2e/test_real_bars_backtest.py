"""Issue 12's first "done means": import real-looking minute bars, backtest them with and without
Alpaca keys (the fake Alpaca on loopback), and the stored bars stay byte-for-byte what was imported
while the trades are those of the real bars. Through the real command line, on real files."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from app import cli
from app.engine.backtest.replay import BacktestRequest, replay_bars
from app.engine.marketdata.calendar import MarketCalendar
from app.engine.sim.market import SimMarket
from app.storage.market_store import MarketStore
from app.storage.records import Bar, BarSource
from tests.cli_helpers import KEY_VARS
from tests.fakes.fixtures import fake_alpaca  # noqa: F401 - the fixture

CAL = MarketCalendar()
WARMUP = CAL.sessions_between(date(2024, 5, 24), date(2024, 5, 31))  # the 5 sessions before the range
RANGE = CAL.sessions_between(date(2024, 6, 3), date(2024, 6, 7))
PARAMS = ("--param", "fast=5", "--param", "slow=20")


def real_looking_bars(sessions: list[date], last_session_minutes: int | None = None) -> list[Bar]:
    """An S&P-like level (3092.91) walking in cents, with IEX-style minutes that had no trade."""
    rng = random.Random(12)
    price, out = 3092.91, []
    for k, day in enumerate(sessions):
        minutes = CAL.session_minutes(day)
        if k == len(sessions) - 1 and last_session_minutes is not None:
            minutes = minutes[:last_session_minutes]
        for ts in minutes:
            o = price
            price = round(max(1.0, price + rng.choice((-1, 1)) * rng.randint(0, 80) / 100), 2)
            if rng.random() < 0.1:
                continue  # no trade that minute
            out.append(Bar(ts, o, round(max(o, price) + 0.05, 2), round(min(o, price) - 0.05, 2), price,
                           rng.randint(100, 9000)))
    return out


def write_alpaca_csv(path: Path, symbol: str, bars: list[Bar]) -> str:
    """As alpaca-py's ``BarSet.df.to_csv()`` writes it."""
    lines = ["symbol,timestamp,open,high,low,close,volume,trade_count,vwap"]
    for b in bars:
        stamp = datetime.fromtimestamp(b.ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")
        lines.append(f"{symbol},{stamp},{b.open},{b.high},{b.low},{b.close},{float(b.volume)},7,{b.close}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def stored(path: Path, symbol: str, source: BarSource | None = None) -> list[tuple]:
    """Every column of the symbol's stored bars (source included), as SQLite holds them."""
    with MarketStore(path) as store:
        sql = "SELECT symbol, ts, quote(open), quote(high), quote(low), quote(close), volume, source FROM bars " \
              "WHERE symbol = ?" + (" AND source = ?" if source is not None else "") + " ORDER BY ts"
        return store.connection.execute(sql, (symbol,) if source is None else (symbol, int(source))).fetchall()


@pytest.fixture
def autotrader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOTRADER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def expected_trades(bars: list[Bar], end: date = RANGE[-1]) -> list[dict]:
    request = BacktestRequest("sma_crossover", "SPX", RANGE[0], end, params={"fast": 5, "slow": 20})
    return replay_bars(request, bars).to_json()["trades"]


def test_without_keys_the_imported_bars_are_replayed_as_they_are(autotrader, tmp_path: Path) -> None:
    bars = real_looking_bars(WARMUP + RANGE)
    assert autotrader("import-bars", "SPX", write_alpaca_csv(tmp_path / "spx.csv", "SPX", bars))[0] == 0
    db = tmp_path / "data" / "sim" / "stocks.db"
    before = stored(db, "SPX")
    assert len(before) == len(bars) and {row[7] for row in before} == {BarSource.IMPORTED}

    code, out, err = autotrader("backtest", "sma_crossover", "SPX", "--start", "2024-06-03", "--end", "2024-06-07",
                                *PARAMS, "--json")
    assert code == 0, err
    result = json.loads(out)
    in_range = sum(1 for b in bars if b.ts >= CAL.session_open(RANGE[0]).timestamp())
    assert result["data"]["text"] == f"real (imported) · {in_range:,} bars"
    assert result["data"]["simulated"] is False and result["data"]["missing_sessions"] == []
    assert result["trades"] and result["trades"] == expected_trades(bars)
    assert stored(db, "SPX") == before  # no synthetic bar written, over or beside them

    # Two sessions past the import: said, not simulated, and the trades are still the real bars'.
    code, out, err = autotrader("backtest", "sma_crossover", "SPX", "--start", "2024-06-03", "--end", "2024-06-11",
                                *PARAMS)
    assert code == 0, err
    assert f"data          real (imported) · {in_range:,} bars · 2 sessions missing" in out
    assert "missing       2024-06-10, 2024-06-11 (import them, or set Alpaca keys" in out
    code, out, err = autotrader("backtest", "sma_crossover", "SPX", "--start", "2024-06-03", "--end", "2024-06-11",
                                *PARAMS, "--json")
    assert json.loads(out)["trades"] == expected_trades(bars, date(2024, 6, 11))
    code, out, err = autotrader("backtest", "sma_crossover", "SPX", "--start", "2024-06-03", "--end", "2024-06-11",
                                *PARAMS, "--require-complete")
    assert code == 2 and out == ""
    assert "SPX lacks 2 session(s) of 2024-06-03 to 2024-06-11 (2024-06-10, 2024-06-11)" in err
    assert stored(db, "SPX") == before

    # A symbol without real bars is still simulated, and says so.
    code, out, err = autotrader("backtest", "sma_crossover", "MSFT", "--start", "2024-06-03", "--end", "2024-06-04",
                                *PARAMS)
    assert code == 0, err
    assert "data          SIMULATED · 780 bars" in out
    assert stored(db, "SPX") == before


def test_with_keys_only_missing_minutes_are_fetched_and_imported_ones_never_change(
        autotrader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_alpaca) -> None:  # noqa: F811
    for name, value in (("ALPACA_API_KEY", fake_alpaca.key), ("ALPACA_SECRET", fake_alpaca.secret),
                        ("ALPACA_TRADING_URL", fake_alpaca.origin), ("ALPACA_DATA_URL", fake_alpaca.origin)):
        monkeypatch.setenv(name, value)
    # Alpaca has other prices for every minute, the imported ones included.
    with MarketStore(tmp_path / "scratch.db") as scratch:
        market = SimMarket(CAL, scratch, seed=5)
        alpaca = [b for day in WARMUP + RANGE for b in market.session_bars("SPX", day)]
    fake_alpaca.add_bars("SPX", [tuple(b) for b in alpaca])
    bars = real_looking_bars(WARMUP + RANGE, last_session_minutes=200)  # the last session is partial
    code, out, err = autotrader("import-bars", "SPX", write_alpaca_csv(tmp_path / "spx.csv", "SPX", bars))
    assert code == 0, err
    assert "coverage: 9 complete sessions, 1 partial" in out
    db = tmp_path / "data" / "paper" / "stocks.db"
    before = stored(db, "SPX")

    code, out, err = autotrader("backtest", "sma_crossover", "SPX", "--start", "2024-06-03", "--end", "2024-06-07",
                                *PARAMS, "--json")
    assert code == 0, err
    assert fake_alpaca.requests("/v2/stocks/bars")  # the partial session was fetched
    assert stored(db, "SPX", BarSource.IMPORTED) == before  # byte for byte
    # Alpaca's bars of the partial session fill the minutes the file lacks, and only those.
    imported_ts = {b.ts for b in bars}
    fetched = [b for b in alpaca if b.ts not in imported_ts and b.ts >= CAL.session_open(RANGE[-1]).timestamp()]
    assert [row[1] for row in stored(db, "SPX", BarSource.ALPACA)] == [b.ts for b in fetched]
    result = json.loads(out)
    assert result["data"]["kind"] == "real (imported + Alpaca)" and result["data"]["missing_sessions"] == []
    assert result["trades"] and result["trades"] == expected_trades(sorted(bars + fetched))

    fake_alpaca.clear_log()  # everything is covered now: a second run fetches nothing, changes nothing
    code, again, err = autotrader("backtest", "sma_crossover", "SPX", "--start", "2024-06-03", "--end",
                                  "2024-06-07", *PARAMS, "--json")
    assert code == 0, err
    assert json.loads(again)["trades"] == result["trades"]
    assert fake_alpaca.requests("/v2/stocks/bars") == []
    assert stored(db, "SPX", BarSource.IMPORTED) == before
