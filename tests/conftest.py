"""Shared pytest fixtures (the fake Alpaca server) and the test layers."""

import pathlib

import pytest

from tests.fakes.fixtures import fake_alpaca  # noqa: F401

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


def _layer(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = path.relative_to(root).parts
    if len(parts) == 1:
        return "e2e"  # tests/test_*.py: the real CLI and kiosk in child processes
    return _FILE_LAYER.get(path.name) or _FOLDER_LAYER.get(parts[0], "integration")


def pytest_collection_modifyitems(config, items):
    """Mark each test with its layer (unit, integration, e2e, gates) from where it lives."""
    root = pathlib.Path(__file__).parent
    for item in items:
        path = pathlib.Path(item.fspath)
        if any(item.get_closest_marker(name) for name in ("unit", "integration", "e2e", "gates")):
            continue  # the test says its own layer (e.g. one process-level test in a unit file)
        if path.is_relative_to(root):
            item.add_marker(getattr(pytest.mark, _layer(path, root)))
