"""``autotrader restore`` and the health lines of ``autotrader status``, as real child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.storage.backup import backup_connection, list_backups
from app.storage.system_store import SystemStore
from app.storage.timefmt import utc_text
from tests.cli_helpers import cli_env

def run(data: Path, *args: str, stdin=None, input: str | None = "") -> subprocess.CompletedProcess:
    kwargs = {"stdin": stdin} if stdin is not None else {"input": input}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          env=cli_env(data), cwd=data, timeout=120, **kwargs)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A sim folder whose system.db has a backup taken before one more trade and a changed marker."""
    root = tmp_path / "data"
    store = SystemStore(root / "sim" / "system.db")
    card = store.create_instance("AAPL", "sma_crossover", 10_000.0)
    store.record_buy(card, 5, 100.0, client_order_id="early")
    store.set_config("marker", "in the backup")
    backup_connection(store.connection, root / "sim" / "backups" / "system-2024-06-04.db")
    store.record_sell(card, 5, 110.0, client_order_id="late")
    store.set_config("marker", "current")
    store.close()
    return root


def marker(root: Path) -> str:
    store = SystemStore(root / "sim" / "system.db")
    try:
        return store.get_config("marker")
    finally:
        store.close()


def backup_of(root: Path) -> str:
    return str(root / "sim" / "backups" / "system-2024-06-04.db")


def test_restore_with_yes_keeps_the_current_file_and_copies_the_backup_in(data):
    result = run(data, "restore", backup_of(data), "--yes")
    assert result.returncode == 0, result.stderr
    assert "1 card(s), 1 running, 1 transaction(s)" in result.stdout
    assert marker(data) == "in the backup"
    (kept,) = [p for p in (data / "sim").iterdir()
               if p.name.startswith("system.db.before-restore-") and not p.name.endswith(("-wal", "-shm"))]
    assert f"kept      the previous file as {kept}" in result.stdout
    old = SystemStore(kept)
    try:
        assert old.get_config("marker") == "current" and len(old.all_transactions()) == 2
    finally:
        old.close()


def test_restore_without_a_terminal_and_without_yes_refuses_and_changes_nothing(data):
    result = run(data, "restore", backup_of(data), input="yes\n")
    assert result.returncode == 2
    assert "restore needs a confirmation: run it in a terminal, or add --yes" in result.stderr
    assert marker(data) == "current"
    assert not [p for p in (data / "sim").iterdir() if "before-restore" in p.name]


def test_restore_asks_on_a_terminal_and_only_yes_goes_ahead(data):
    for answer, code, expected in (("no\n", 1, "current"), ("yes\n", 0, "in the backup")):
        leader, follower = os.openpty()
        try:
            os.write(leader, answer.encode())
            result = run(data, "restore", backup_of(data), stdin=follower)
        finally:
            os.close(follower)
            os.close(leader)
        assert result.returncode == code, result.stderr
        assert "Type 'yes' to replace system.db" in result.stdout
        assert marker(data) == expected
    assert "nothing changed" not in result.stdout


def test_restore_refuses_while_the_kiosk_uses_system_db(data):
    store = SystemStore(data / "sim" / "system.db")  # this test process plays the running kiosk
    try:
        result = run(data, "restore", backup_of(data), "--yes")
    finally:
        store.close()
    assert result.returncode == 2
    assert f"stop the kiosk first: process {os.getpid()} has" in result.stderr
    assert marker(data) == "current"

    store = SystemStore(data / "sim" / "system.db")
    recent = utc_text(datetime.now(timezone.utc) - timedelta(seconds=30))
    store.set_config("last_cycle", json.dumps({"minute": "2024-06-04T14:00:00Z", "wall": recent}))
    store.close()
    result = run(data, "restore", backup_of(data), "--yes")
    assert result.returncode == 2 and "stop the kiosk first: its last trading cycle ran at" in result.stderr
    assert marker(data) == "current"


def test_restore_refuses_bad_backups_and_other_modes(data):
    bad = data / "sim" / "backups" / "system-2024-06-05.db"
    bad.write_text("not a database at all" * 100)
    result = run(data, "restore", str(bad), "--yes")
    assert result.returncode == 2 and "cannot restore: system-2024-06-05.db" in result.stderr
    result = run(data, "restore", str(data / "nope.db"), "--yes")
    assert result.returncode == 2 and "no backup file at" in result.stderr

    paper = data / "paper" / "backups" / "system-2024-06-04.db"
    paper.parent.mkdir(parents=True)
    paper.write_bytes(Path(backup_of(data)).read_bytes())
    result = run(data, "restore", str(paper), "--yes")
    assert result.returncode == 2 and "is a PAPER backup but this would restore the SIM system.db" in result.stderr
    assert marker(data) == "current"


def test_status_reports_backup_sizes_free_disk_logs_and_errors_today(data):
    logs = data / "sim" / "logs"
    logs.mkdir(parents=True)
    today = datetime.now(timezone.utc).date().isoformat()
    (logs / "engine.log").write_text(f"{today}T00:00:01.000Z ERROR autotrader.engine: boom\n"
                                     f"{today}T00:00:02.000Z INFO autotrader.engine: fine\n")
    result = run(data, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    newest = list_backups(data / "sim" / "backups")[-1]
    assert status["last_backup"]["file"] == str(newest.path)
    assert status["databases"]["system.db"] > 0 and status["free_disk_bytes"] > 0
    assert status["log_bytes"] >= (logs / "engine.log").stat().st_size
    assert status["errors_today"] == 1

    text = run(data, "status")
    assert text.returncode == 0, text.stderr
    assert f"backup    {newest.path} at " in text.stdout
    assert "storage   system.db " in text.stdout and " GB free; logs " in text.stdout
    assert "errors    1 logged today" in text.stdout


def test_a_backup_records_its_mode_and_restore_refuses_it_in_another_mode_wherever_it_lies(data, tmp_path):
    stamped = tmp_path / "elsewhere" / "copied-sim-backup.db"
    store = SystemStore(data / "sim" / "system.db")
    try:
        backup_connection(store.connection, stamped, mode="sim")
    finally:
        store.close()
    paper = run(data, "restore", str(stamped), "--yes")  # no keys: sim; now the same file as PAPER
    assert paper.returncode == 0, paper.stderr
    restored = SystemStore(data / "sim" / "system.db")
    try:
        assert restored.get_config("backup_mode") is None  # the stamp stays with the backup file
    finally:
        restored.close()
    env = {"ALPACA_API_KEY": "k" * 20, "ALPACA_SECRET": "s" * 40, "ALPACA_PAPER": "true"}
    refused = subprocess.run([sys.executable, "-m", "app", "restore", str(stamped), "--yes"], capture_output=True,
                             text=True, env=cli_env(data, **env), cwd=data, timeout=120)
    assert refused.returncode == 2
    assert "is a SIM backup but this would restore the PAPER system.db" in refused.stderr
    assert not (data / "paper" / "system.db").exists()
