"""``autotrader backtest`` as a person runs it (a fresh process): its worker is forked from the command
itself, gives the in-process result, and is as confined as the kiosk's backtest workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from app.engine.backtest.replay import BacktestRequest, run_backtest
from app.engine.system.data_folder import data_paths
from app.engine.system.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = Path(__file__).parent / "hostile_algorithms"
KEY_VARS = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "ALPACA_API_KEY", "ALPACA_SECRET_KEY", "AUTOTRADER_MODE")


def command(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    clean.update(AUTOTRADER_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run([sys.executable, "-m", "app", "backtest", *args, "--sim", "--json"], cwd=tmp_path,
                          env=clean, capture_output=True, text=True, timeout=300, check=False)


def test_the_command_gives_the_in_process_result(tmp_path: Path) -> None:
    done = command(tmp_path, "sma_crossover", "MSFT", "--start", "2024-03-04", "--end", "2024-03-06",
                   "--param", "fast=2", "--param", "slow=3")
    assert done.returncode == 0, done.stderr
    there = json.loads(done.stdout)
    settings = load_settings({"AUTOTRADER_DATA_DIR": str(tmp_path / "data")}, dotenv_files=[], force_sim=True)
    here = run_backtest(BacktestRequest("sma_crossover", "MSFT", date(2024, 3, 4), date(2024, 3, 6),
                                        params={"fast": 2, "slow": 3}),
                        settings=settings, now=datetime.now(timezone.utc)).to_json()
    assert there["trades"] and there["data"]["simulated"]
    assert {k: v for k, v in there.items() if k != "elapsed_s"} == {k: v for k, v in here.items() if k != "elapsed_s"}


def test_the_commands_worker_cannot_write_system_db(tmp_path: Path) -> None:
    settings = load_settings({"AUTOTRADER_DATA_DIR": str(tmp_path / "data")}, dotenv_files=[], force_sim=True)
    paths = data_paths(settings)
    paths.create()
    paths.system_db.write_bytes(b"the card's records")
    done = command(tmp_path, "writes_system_db", "MSFT", "--start", "2024-03-04", "--end", "2024-03-04",
                   "--param", f"path={paths.system_db}", AUTOTRADER_ALGORITHM_DIRS=str(HOSTILE))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["minutes"] == 390  # it ran, every minute trying to write
    assert paths.system_db.read_bytes() == b"the card's records"


def test_a_command_that_already_holds_much_address_space_gets_the_same_room(tmp_path: Path) -> None:
    """The forked worker's memory limit counts from what it inherits (a pytest worker, a Pi's big
    imports), not from zero: 1.5 GB mapped before the command still leaves the replay its 1 GB."""
    script = ("import mmap, sys; held = mmap.mmap(-1, 1_500_000_000); from app import cli; "
              "sys.exit(cli.main(['backtest', 'sma_crossover', 'MSFT', '--start', '2024-03-04', "
              "'--end', '2024-03-04', '--sim', '--json']))")
    clean = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    clean.update(AUTOTRADER_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["symbol"] == "MSFT"
