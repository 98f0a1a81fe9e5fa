"""Shared pytest fixtures (the fake Alpaca server) and the test layers."""

import os
import pathlib

import pytest

from tests.fakes.fixtures import fake_alpaca  # noqa: F401

# Children that get a HOME of their own (so that no ~/.config/autotrader/.env is read) still find the
# calendar's schedule file (app/engine/marketdata/calendar_cache.py) instead of rebuilding it each.
os.environ.setdefault("XDG_CACHE_HOME", str(pathlib.Path.home() / ".cache"))

# Every test belongs to one layer, registered in pyproject.toml: `./test.sh -m unit` is the quick
# loop (no processes, no servers, no engine thread), `-m "not e2e"` skips the process-level tests.
# New tests go in tests/unit, tests/integration or tests/e2e; the older folders are mapped here.
_FOLDER_LAYER = {"unit": "unit", "integration": "integration", "e2e": "e2e", "gates": "gates",
                 "storage": "unit", "ui": "integration", "fakes": "integration", "engine": "unit"}
_FILE_LAYER = {
    # tests/engine files that run the fake Alpaca, the engine thread or child processes
    "test_alpaca_broker.py": "integration", "test_alpaca_history.py": "integration",
    "test_bar_stream.py": "integration", "test_engine_service.py": "integration",
    "test_orchestrator.py": "integration", "test_trading_cycle.py": "integration",
    "test_maintenance.py": "integration", "test_write_batching.py": "integration",
    "test_backtest.py": "integration", "test_shipped_algorithms.py": "integration",
    "test_algorithm_runner.py": "integration",
    "test_crash_safety.py": "e2e", "test_fault_schedule.py": "e2e",
}


# The longest tests, with their seconds in one `./test.sh --durations=25` run on this 2-core machine
# (2026-12-01, busy: load 4-8; the soak's length also depends on the time of day). They are collected
# first, longest first: `./test.sh` hands out tests one at a time in collection order
# (`--dist loadgroup`), so these start at once, spread over the workers, instead of making the tail
# of the run. Tests under ~20 s make no tail worth moving them for and keep their place (which also
# keeps the real-time-sensitive ones away from the CPU-heavy start). Only the order depends on this
# table (keyed by file and test name, so a test that moves to another folder keeps its place).
_EXPECTED_S = {
    "test_soak.py::test_two_accelerated_sessions_with_20_cards_miss_nothing_and_leak_nothing": 96,
    "test_fault_schedule.py::test_fault_schedule": 89,
    "test_restart.py::test_sim_app_survives_20_power_cuts": 65,
    "test_crash_safety.py::test_sigkill_at_random_moments_never_loses_or_doubles_a_fill": 62,
    "test_restart.py::test_alpaca_app_survives_power_cuts_during_start": 49,
    "test_secrets_in_logs.py::test_cli_set_pin_doctor_status_add_and_run_keep_secrets_out": 44,
    "test_crash_safety.py::test_sigkill_mid_netted_minutes_books_every_card_once": 39,
    "test_screen_xvfb.py::test_ten_launches_all_scaled": 30,  # each of four screen sizes
    "test_beside_kiosk.py::test_status_add_and_stop_beside_a_running_speed_600_sim": 25,
    "test_evening_check.py::test_live_sim_days_equal_their_backtests_and_a_gap_in_live_diverges": 23,
    "test_backtest.py::test_replay_trades_exactly_like_the_live_cycle_on_the_sim_broker": 22,
}


def _expected_s(item: pytest.Item) -> float:
    """The table's seconds for ``item`` (0 for every test not in it)."""
    name = getattr(item, "originalname", None) or item.name
    return _EXPECTED_S.get(f"{pathlib.Path(item.fspath).name}::{name}", 0)


def _layer(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = path.relative_to(root).parts
    if len(parts) == 1:
        return "e2e"  # tests/test_*.py: the real CLI and kiosk in child processes
    return _FILE_LAYER.get(path.name) or _FOLDER_LAYER.get(parts[0], "integration")


def pytest_collection_modifyitems(config, items):
    """Mark each test with its layer (unit, integration, e2e, gates) from where it lives; longest first."""
    root = pathlib.Path(__file__).parent
    for item in items:
        path = pathlib.Path(item.fspath)
        if any(item.get_closest_marker(name) for name in ("unit", "integration", "e2e", "gates")):
            continue  # the test says its own layer (e.g. one process-level test in a unit file)
        if path.is_relative_to(root):
            item.add_marker(getattr(pytest.mark, _layer(path, root)))
    items.sort(key=lambda item: -_expected_s(item))  # stable: the rest keep their order
