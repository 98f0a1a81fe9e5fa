"""A data folder that cannot be used gives one sentence (never a traceback), and its permissions are
owner-only: as real ``python -m app`` children."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.storage.market_store import MarketStore
from app.storage.system_store import SystemStore
from tests.cli_helpers import run_cli


def cli(data_dir: Path, *args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cwd = cwd or data_dir.parent
    return run_cli(cwd, *args, stdin=stdin, AUTOTRADER_DATA_DIR=str(data_dir), XDG_CONFIG_HOME=str(cwd / "config"))


def populate(data_dir: Path) -> None:
    with SystemStore(data_dir / "sim" / "system.db") as store:
        store.create_instance("AAPL", "buy_and_hold", 1000.0)
    MarketStore(data_dir / "sim" / "stocks.db").close()
    for folder in ("logs", "backups"):
        (data_dir / "sim" / folder).mkdir(exist_ok=True)


@contextmanager
def read_only(data_dir: Path):
    """``data_dir`` read-only: a read-only tmpfs holding a copy for root (who ignores permissions),
    plain permissions for anyone else."""
    if os.geteuid() != 0:
        for path in [*data_dir.rglob("*"), data_dir]:
            path.chmod(path.stat().st_mode & ~0o222)
        try:
            yield
        finally:
            for path in [data_dir, *data_dir.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
        return
    keep = data_dir.with_name("kept")
    shutil.move(data_dir, keep)
    data_dir.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(data_dir)]).returncode != 0:
        pytest.skip("running as root and cannot mount a tmpfs: no way to make a folder read-only here")
    try:
        shutil.copytree(keep, data_dir, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(data_dir)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(data_dir)], check=False)


def one_sentence(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith("autotrader:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_a_read_only_data_folder_gives_one_sentence_for_every_command(tmp_path):
    data_dir = tmp_path / "data"
    populate(data_dir)
    with read_only(data_dir):
        for args, stdin in ((("status",), None), (("add", "AAPL", "buy_and_hold", "100"), None),
                            (("stop", "1"), None), (("set-pin",), "4817\n4817\n"),
                            (("bars", "AAPL", "--last", "3"), None), (("run", "--headless"), None),
                            (("run", "--exit-after", "1"), None)):
            line = one_sentence(cli(data_dir, *args, stdin=stdin))
            assert f"cannot use the data folder {data_dir / 'sim'}" in line, (args, line)
            assert "read-only" in line or "may not write" in line, (args, line)


def test_a_data_folder_that_cannot_be_made_gives_one_sentence(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    for args in (("status",), ("run", "--headless"), ("run", "--exit-after", "1"), ("set-pin",)):
        line = one_sentence(cli(blocker / "data", *args, stdin="4817\n4817\n", cwd=tmp_path))
        assert f"cannot create the data folder {blocker / 'data' / 'sim'}: Not a directory" in line, line


def test_the_data_folder_is_owner_only_and_existing_files_are_narrowed_at_start(tmp_path):
    data_dir = tmp_path / "data"
    populate(data_dir)
    sim = data_dir / "sim"
    for path in (sim, sim / "logs", sim / "backups"):
        path.chmod(0o755)
    for path in (sim / "system.db", sim / "stocks.db"):
        path.chmod(0o644)
    (sim / "backups" / "system-2024-06-04.db").write_bytes((sim / "system.db").read_bytes())
    (sim / "backups" / "system-2024-06-04.db").chmod(0o644)
    done = cli(data_dir, "status")
    assert done.returncode == 0, done.stderr
    modes = {p.relative_to(sim).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in [sim, *sim.rglob("*")] if not p.name.endswith((".log", "-shm", "-wal"))}
    assert modes.pop(".") == 0o700
    assert {name: mode for name, mode in modes.items() if p_is_dir(sim / name)} == {"logs": 0o700, "backups": 0o700}
    assert all(mode == 0o600 for name, mode in modes.items() if not p_is_dir(sim / name)), modes

    fresh = tmp_path / "fresh"
    assert cli(fresh, "status").returncode == 0
    assert stat.S_IMODE((fresh / "sim").stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / "sim" / "system.db").stat().st_mode) == 0o600


def p_is_dir(path: Path) -> bool:
    return path.is_dir()
