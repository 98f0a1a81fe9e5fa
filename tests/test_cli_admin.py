"""``autotrader algorithms / add / stop / status`` as a person runs them over SSH, in sim mode.

Each command is a real ``python -m app`` child with its own data folder and no Alpaca keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.storage.system_store import SystemStore
from tests.cli_helpers import run_cli

BROKEN = Path(__file__).resolve().parent / "engine" / "broken_algorithms"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def cli(data_dir: Path, *args: str, **extra: str):
    # A private config folder: no user-level .env with real keys can leak into the child.
    return run_cli(data_dir, *args, XDG_CONFIG_HOME=str(data_dir.parent / "config"), **extra)


def row_counts(data_dir: Path) -> dict[str, int]:
    store = SystemStore(data_dir / "sim" / "system.db")
    try:
        conn = store.connection
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("algorithm_instances", "transactions", "orders", "system_config")}
    finally:
        store.close()


def status(data_dir: Path) -> dict:
    done = cli(data_dir, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_algorithms_lists_shipped_and_broken_files(data_dir):
    done = cli(data_dir, "algorithms", AUTOTRADER_ALGORITHM_DIRS=str(BROKEN))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    by_type = {line.split()[0]: line for line in lines}
    for shipped in ("sma_crossover", "buy_and_hold", "lot_exits"):
        assert "BROKEN" not in by_type[shipped]
    assert "fast=20, slow=50" in by_type["sma_crossover"]
    assert "BROKEN" in by_type["syntax_error"] and "SyntaxError" in by_type["syntax_error"]
    assert "BROKEN" in by_type["import_error"] and "autotrader_no_such_module" in by_type["import_error"]
    assert "BROKEN" not in by_type["healthy"]
    assert "_private_helper" not in done.stdout


def test_add_status_stop_round_trip(data_dir):
    empty = status(data_dir)
    assert empty["mode"] == "sim" and empty["instances"] == [] and empty["halted"] is False
    assert empty["broker_cash"] == "100000.00" and empty["available_cash"] == "100000.00"

    added = cli(data_dir, "add", "nvda", "sma_crossover", "2500", "--param", "fast=5", "--param", "slow=20")
    assert added.returncode == 0, added.stderr
    card_id = int(added.stdout.strip())

    listed = status(data_dir)
    (card,) = listed["instances"]
    assert (card["id"], card["ticker"], card["algorithm"]) == (card_id, "NVDA", "sma_crossover")
    assert card["display_name"].startswith("NVDA_sma_crossover_")
    assert (card["shares"], card["trade_count"], card["faulted"]) == (0, 0, None)
    assert card["price"] is not None  # sim history was made ready when the card was added
    assert (card["value"], card["pnl"], card["pnl_pct"]) == ("2500.00", "0.00", "0.00")
    assert listed["available_cash"] == "97500.00"

    human = cli(data_dir, "status")
    assert human.returncode == 0 and f"#{card_id}" in human.stdout and "SIM" in human.stdout

    stopped = cli(data_dir, "stop", str(card_id))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"stopped {card['display_name']}"
    assert status(data_dir)["instances"] == []
    again = cli(data_dir, "stop", str(card_id))
    assert again.returncode == 2 and again.stderr.strip() == f"autotrader: no running instance with id {card_id}"


@pytest.mark.parametrize("args, message", [
    (("add", "NVDA!", "sma_crossover", "1000"), "is not a ticker"),
    (("add", "NVDA", "no_such_algo", "1000"), "no_such_algo"),
    (("add", "NVDA", "sma_crossover", "0"), "capital must be more than $0"),
    (("add", "NVDA", "sma_crossover", "lots"), "'lots' is not an amount of dollars"),
    (("add", "NVDA", "sma_crossover", "250000"), "is more than the $100,000.00 available"),
    (("add", "NVDA", "sma_crossover", "1000", "--param", "fsat=5"), "did you mean 'fast'?"),
    (("add", "NVDA", "sma_crossover", "1000", "--param", "fast"), "must look like name=value"),
    (("stop", "42"), "no running instance with id 42"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(data_dir, args, message):
    assert status(data_dir)["instances"] == []  # creates the files (and the journal id) first
    before = row_counts(data_dir)
    done = cli(data_dir, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotrader: ") and message in lines[0], done.stderr
    assert row_counts(data_dir) == before


def test_keys_in_the_environment_are_not_used_with_sim(data_dir):
    done = cli(data_dir, "status", "--json", "--sim", ALPACA_API_KEY="PKSECRETKEY123", ALPACA_SECRET="hunter2hunter2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "sim"
    assert "PKSECRETKEY123" not in done.stdout + done.stderr and "hunter2" not in done.stdout + done.stderr
