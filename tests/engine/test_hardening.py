"""Hardening: an exposed .env is warned about, live mode needs ALPACA_PAPER=false, algorithm files load
only from the configured folders, and a hostile CSV import is rejected in bounded memory."""

from __future__ import annotations

import io
import logging
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.engine.plugins.loader import (AlgorithmLoadError, default_dirs, discover, load_algorithm_class)
from app.engine.marketdata.bar_csv import MAX_LINE_CHARS, BarCsvError, iter_bars
from app.engine.host.client import ServiceError
from app.engine.system.hardening import exposed_env_files, warn_exposed_env_files
from app.engine.system.settings import SettingsError, load_settings
from app.storage.records import Bar
from tests.cli_helpers import run_cli

KEYS = {"ALPACA_API_KEY": "PKHARDENKEY0001", "ALPACA_SECRET": "hardenSECRET0002"}


# --- .env permissions -------------------------------------------------------------------------


def _env_file(folder: Path, mode: int) -> Path:
    path = folder / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in KEYS.items()))
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode, exposed", [(0o600, False), (0o400, False), (0o644, True), (0o640, True),
                                           (0o604, True), (0o660, True)])
def test_env_readable_by_group_or_others_is_found(tmp_path, mode, exposed):
    path = _env_file(tmp_path, mode)
    assert exposed_env_files([path, tmp_path / "missing.env"]) == ([path] if exposed else [])


def test_warning_names_the_file_and_the_fix_once_on_stderr_and_in_the_log(tmp_path, caplog):
    path = _env_file(tmp_path, 0o644)
    err = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="autotrader"):
        assert warn_exposed_env_files([path], stream=err) == [path]
    (line,) = err.getvalue().splitlines()
    assert str(path) in line and f"chmod 600 {path}" in line
    (record,) = [r for r in caplog.records if r.name == "autotrader.engine.hardening"]
    assert record.levelno == logging.WARNING and f"chmod 600 {path}" in record.getMessage()
    for value in KEYS.values():  # the file's content is never read into the message
        assert value not in line and value not in caplog.text

    path.chmod(0o600)
    err = io.StringIO()
    caplog.clear()
    assert warn_exposed_env_files([path], stream=err) == []
    assert err.getvalue() == "" and not caplog.records


def test_no_second_line_when_the_log_already_goes_to_that_stream(tmp_path):
    path = _env_file(tmp_path, 0o644)
    err = io.StringIO()
    handler = logging.StreamHandler(err)
    root = logging.getLogger("autotrader")
    root.addHandler(handler)
    try:
        warn_exposed_env_files([path], stream=err)
    finally:
        root.removeHandler(handler)
    assert len(err.getvalue().splitlines()) == 1 and "chmod 600" in err.getvalue()


@pytest.mark.e2e  # starts the real kiosk in a child process
def test_kiosk_start_warns_about_an_exposed_env_in_its_working_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env_file = work / ".env"
    env_file.write_text("ALPACA_FEED=iex\n")  # no keys: the child runs the simulated market
    env_file.chmod(0o644)
    data = tmp_path / "data"
    done = run_cli(data, "run", "--sim", "--headless", "--exit-after", "0.5", cwd=work, timeout=60,
                   XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "chmod 600" in line]
    assert len(lines) == 1 and str(env_file) in lines[0], done.stderr
    logged = (data / "sim" / "logs" / "engine.log").read_text()
    assert f"chmod 600 {env_file}" in logged and "WARNING" in logged

    env_file.chmod(0o600)
    again = run_cli(data, "run", "--sim", "--headless", "--exit-after", "0.5", cwd=work, timeout=60,
                    XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert again.returncode == 0 and "chmod" not in again.stderr


# --- paper / live -----------------------------------------------------------------------------


@pytest.mark.parametrize("paper, mode", [(None, "paper"), ("true", "paper"), ("false", "live"), ("FALSE", "live"),
                                         ("0", "live"), ("no", "live"), ("yes", "paper"), ("", "paper")])
def test_live_mode_needs_alpaca_paper_false(paper, mode):
    env = dict(KEYS)
    if paper is not None:
        env["ALPACA_PAPER"] = paper
    settings = load_settings(env, dotenv_files=[])
    assert settings.mode == mode
    assert settings.paper is (mode == "paper")


def test_alpaca_paper_garbage_is_refused_not_guessed():
    with pytest.raises(SettingsError, match="ALPACA_PAPER must be true or false"):
        load_settings({**KEYS, "ALPACA_PAPER": "live-please"}, dotenv_files=[])


def test_live_without_keys_is_sim_and_sim_forced_wins():
    assert load_settings({"ALPACA_PAPER": "false"}, dotenv_files=[]).mode == "sim"
    assert load_settings({**KEYS, "ALPACA_PAPER": "false"}, dotenv_files=[], force_sim=True).mode == "sim"


# --- algorithm folders ------------------------------------------------------------------------

EVIL = '''\
from pathlib import Path
Path({marker!r}).write_text("executed")
from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Evil"
    description = "Must never be loaded."

    def run(self, current_time, algo_id):
        return ("hold", 0)
'''


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """evil.py in the working folder and in a stray temp folder; marker is written if either runs."""
    marker = tmp_path / "EXECUTED"
    cwd = tmp_path / "cwd"
    stray = tmp_path / "stray"
    for folder in (cwd, stray):
        folder.mkdir()
        (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.chdir(cwd)
    return marker, cwd, stray


def test_files_outside_the_configured_folders_are_never_discovered(evil, tmp_path):
    marker, cwd, stray = evil
    allowed = tmp_path / "mine"
    allowed.mkdir()
    dirs = default_dirs([allowed])
    assert all(info.algorithm_type != "evil" for info in discover(dirs))
    with pytest.raises(AlgorithmLoadError, match="unknown algorithm type 'evil'"):
        load_algorithm_class("evil", dirs)
    assert not marker.exists()
    # Put in a configured folder, the same file is found: the folders, not the name, decide.
    assert "evil" in {info.algorithm_type for info in discover(default_dirs([stray]))}
    assert marker.exists()


@pytest.mark.parametrize("algorithm_type", ["../evil", "../stray/evil", "evil.py", "cwd/evil", "/tmp/evil",
                                            "{stray}/evil", "{stray}/evil.py", "..", "", "evil\x00", 42])
def test_paths_as_algorithm_types_are_refused_with_a_clear_message(evil, algorithm_type):
    marker, cwd, stray = evil
    if isinstance(algorithm_type, str):
        algorithm_type = algorithm_type.format(stray=stray)
    with pytest.raises(AlgorithmLoadError, match="invalid algorithm type .*no path"):
        load_algorithm_class(algorithm_type, default_dirs([cwd.parent]))
    assert not marker.exists()


def test_engine_service_refuses_a_path_algorithm_and_writes_nothing(evil, tmp_path):
    from tests.engine.crash_child import SimRig

    marker, cwd, stray = evil
    rig = SimRig(tmp_path / "data", datetime(2024, 6, 4, 15, 0, tzinfo=timezone.utc))
    try:
        for bad in ("../stray/evil", str(stray / "evil.py")):
            with pytest.raises(ServiceError, match="invalid algorithm type"):
                rig.service.create_instance("NVDA", bad, "1000")
        assert rig.system.all_instances() == []
    finally:
        rig.close()
    assert not marker.exists()


# --- CSV import bounds ------------------------------------------------------------------------


def _write_long_line(path: Path, size: int, *, header: bool) -> None:
    chunk = "9" * (1 << 20)
    with open(path, "w") as handle:
        if header:
            handle.write("timestamp,open,high,low,close,volume\n")
        for _ in range(size // len(chunk)):
            handle.write(chunk)


def test_a_single_50_mb_line_is_rejected_fast_in_bounded_memory(tmp_path):
    path = tmp_path / "hostile.csv"
    _write_long_line(path, 50 << 20, header=False)
    tracemalloc.start()
    try:
        with pytest.raises(BarCsvError, match="line 1 must be the header"):
            list(iter_bars(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"peak {peak / 1e6:.1f} MB"


def test_an_over_long_data_line_is_one_problem_and_line_numbers_stay_right(tmp_path):
    path = tmp_path / "long_row.csv"
    _write_long_line(path, 50 << 20, header=True)
    with open(path, "a") as handle:
        handle.write("\n2024-06-04T14:30:00Z,10,11,9,10.5,100\n" + "x" * (MAX_LINE_CHARS + 5) + "\n")
    tracemalloc.start()
    try:
        items = list(iter_bars(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"peak {peak / 1e6:.1f} MB"
    ts = int(datetime(2024, 6, 4, 14, 30, tzinfo=timezone.utc).timestamp())
    assert items == [(2, f"line longer than {MAX_LINE_CHARS:,} characters"), (3, Bar(ts, 10.0, 11.0, 9.0, 10.5, 100)),
                     (4, f"line longer than {MAX_LINE_CHARS:,} characters")]


def test_a_line_of_exactly_the_limit_is_read_and_one_more_char_is_not(tmp_path):
    prefix = "2024-06-04T14:30:00Z,10,11,9,10.5,"
    # Leading zeros keep the volume 100 while the line (newline included) grows to the limit.
    fits = prefix + "0" * (MAX_LINE_CHARS - len(prefix) - 4) + "100"
    assert len(fits + "\n") == MAX_LINE_CHARS
    path = tmp_path / "edge.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + fits + "\n" + "0" + fits + "\n")
    (first, second) = list(iter_bars(path))
    assert first[0] == 2 and isinstance(first[1], Bar) and first[1].volume == 100
    assert second == (3, f"line longer than {MAX_LINE_CHARS:,} characters")
