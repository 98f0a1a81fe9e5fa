"""Fixture: a file that does not parse."""
from app.engine.algorithm_api import AlgorithmBase
class Algorithm(AlgorithmBase) oops
