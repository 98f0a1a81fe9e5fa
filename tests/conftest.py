"""Shared pytest fixtures: the fake Alpaca server."""

from tests.fakes.fixtures import fake_alpaca  # noqa: F401

import pathlib  # noqa: E402

import pytest  # noqa: E402

_LAYERS = {"unit": "unit", "integration": "integration", "e2e": "e2e", "gates": "gates"}


def pytest_collection_modifyitems(config, items):
    """Mark each test with its layer from the folder it lives in (tests/unit, tests/integration, …)."""
    root = pathlib.Path(__file__).parent
    for item in items:
        try:
            layer = pathlib.Path(item.fspath).relative_to(root).parts[0]
        except ValueError:
            continue
        if layer in _LAYERS:
            item.add_marker(getattr(pytest.mark, _LAYERS[layer]))
