"""Shared pytest fixtures: the fake Alpaca server."""

from tests.fakes.fixtures import fake_alpaca  # noqa: F401
