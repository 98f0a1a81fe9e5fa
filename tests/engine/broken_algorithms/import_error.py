"""Fixture: a file importing a module that does not exist."""
from app.engine.algorithm_api import AlgorithmBase
import autotrader_no_such_module  # noqa: F401
