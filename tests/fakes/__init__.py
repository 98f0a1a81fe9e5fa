"""Test doubles that speak real protocols (the fake Alpaca server)."""

from .alpaca_server import FakeAlpaca, Faults, RequestRecord, wait_until

__all__ = ["FakeAlpaca", "Faults", "RequestRecord", "wait_until"]
