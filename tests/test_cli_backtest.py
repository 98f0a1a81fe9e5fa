"""``autotrader backtest`` through the real command-line entry point, in sim mode in a temp folder."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from app import cli
from app.commands import backtest
from tests.cli_helpers import KEY_VARS

ARGS = ["backtest", "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05",
        "--param", "fast=5", "--param", "slow=20", "--capital", "5000"]


@pytest.fixture
def autotrader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run ``autotrader ARGS`` in-process; returns (exit code, stdout, stderr)."""
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOTRADER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no stray .env
    assert backtest in cli.COMMAND_GROUPS

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_json_output_is_one_object_with_the_trades(autotrader) -> None:
    code, out, err = autotrader(*ARGS, "--json", "--sim")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    data = json.loads(out)
    assert (data["algorithm_type"], data["symbol"], data["start"], data["end"]) == \
        ("sma_crossover", "MSFT", "2024-03-04", "2024-03-05")
    assert data["params"] == {"fast": 5, "slow": 20} and data["capital"] == 5000 and data["minutes"] == 780
    assert data["trades"] and {"timestamp", "side", "shares", "price", "value"} <= set(data["trades"][0])
    assert data["trades"][0]["timestamp"].endswith("Z") and data["trades"][0]["side"] == "buy"
    for key in ("final_value", "pnl", "pnl_pct", "max_drawdown", "round_trips", "win_rate", "exposure_pct",
                "buy_and_hold_pnl", "equity_curve"):
        assert key in data
    assert data["equity_curve"][0]["value"] == 5000
    assert err == ""  # no progress bar when stderr is not a terminal


def test_summary_and_trades_csv(autotrader, tmp_path: Path) -> None:
    target = tmp_path / "trades.csv"
    code, out, err = autotrader(*ARGS, "--trades-csv", str(target))
    assert code == 0, err
    assert "sma_crossover (SMA crossover) on MSFT, 2024-03-04 to 2024-03-05" in out
    assert "P&L" in out and "buy and hold" in out and "max drawdown" in out and "win rate" in out
    rows = list(csv.reader(target.open()))
    assert rows[0] == ["timestamp", "side", "shares", "price"]
    code, out, _ = autotrader(*ARGS, "--json")
    trades = json.loads(out)["trades"]
    assert len(rows) - 1 == len(trades) > 0
    for row, trade in zip(rows[1:], trades):
        stamp = datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert row[0] == trade["timestamp"] and stamp.minute == int(trade["timestamp"][14:16])
        assert (row[1], int(row[2]), Decimal(row[3])) == (trade["side"], trade["shares"], Decimal(str(trade["price"])))


def test_progress_bar_draws_on_a_terminal() -> None:
    class Tty:
        def __init__(self) -> None:
            self.text = ""

        def isatty(self) -> bool:
            return True

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    tty = Tty()
    bar = backtest.ProgressBar(tty, "sma AAPL")
    for f in (0.0, 0.5, 0.5, 1.0):
        bar(f)
    assert tty.text.count("\r") == 3 and "]  50%" in tty.text and tty.text.endswith("] 100%\n")


@pytest.mark.parametrize("args, message", [
    (["backtest", "sma_crosover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05"],
     "unknown algorithm type 'sma_crosover'; did you mean 'sma_crossover'?"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-13-01", "--end", "2024-03-05"],
     "--start '2024-13-01' is not a date YYYY-MM-DD"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-05", "--end", "2024-03-04"],
     "the end date 2024-03-04 is before the start date 2024-03-05"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-09", "--end", "2024-03-10"],
     "no completed trading sessions between 2024-03-09 and 2024-03-10"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2014-01-02", "--end", "2014-01-03"],
     "2014-01-02 is outside the market calendar"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05", "--param", "fats=3"],
     "bad parameter for sma_crossover: unknown parameter 'fats' for sma_crossover; did you mean 'fast'?"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05", "--param", "fast=x"],
     "bad parameter for sma_crossover: parameter 'fast' must be a whole number; got 'x'"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05", "--param", "fast"],
     "--param 'fast' must look like name=value"),
    (["backtest", "sma_crossover", "MS/FT", "--start", "2024-03-04", "--end", "2024-03-05"],
     "'MS/FT' is not a ticker"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05", "--capital", "-5"],
     "--capital must be positive, got -5"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05", "--slippage-bps", "x"],
     "--slippage-bps 'x' is not a number"),
    (["backtest", "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-05", "--trades-csv",
      "/nonexistent/folder/t.csv"], "cannot write /nonexistent/folder/t.csv: the folder"),
])
def test_bad_input_is_one_line_and_exit_code_2(autotrader, args: list[str], message: str) -> None:
    code, out, err = autotrader(*args, "--sim")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotrader: ") and message in lines[0], err


def test_a_failing_algorithm_is_one_line_and_exit_code_1(autotrader, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOTRADER_ALGORITHM_DIRS", str(Path(__file__).parent / "engine" / "broken_algorithms"))
    code, out, err = autotrader("backtest", "raises", "MSFT", "--start", "2024-03-04", "--end", "2024-03-04", "--sim")
    assert code == 1 and out == ""
    assert err.strip() == ("autotrader: raises failed at 2024-03-04T14:30:00Z: ZeroDivisionError: "
                           "integer division or modulo by zero (raises.py line 12)")


def test_no_bars_in_range_is_one_line_and_exit_code_2(autotrader, monkeypatch, fake_alpaca) -> None:
    for name, value in (("ALPACA_API_KEY", fake_alpaca.key), ("ALPACA_SECRET", fake_alpaca.secret),
                        ("ALPACA_TRADING_URL", fake_alpaca.origin), ("ALPACA_DATA_URL", fake_alpaca.origin)):
        monkeypatch.setenv(name, value)
    code, out, err = autotrader(*ARGS)  # keys configured, and Alpaca has no MSFT bars at all
    assert code == 2 and out == ""
    assert fake_alpaca.requests("/v2/stocks/bars")
    assert err == "autotrader: no MSFT bars between 2024-03-04 and 2024-03-05\n"
