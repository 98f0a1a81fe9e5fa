"""Fixture: re-exports another module's class instead of defining its own."""

from app.engine.algorithm_api import AlgorithmBase as Algorithm  # noqa: F401
