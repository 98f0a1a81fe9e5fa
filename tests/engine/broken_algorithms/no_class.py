"""Fixture: a file with no Algorithm class."""

from app.engine.algorithm_api import AlgorithmBase


class Strategy(AlgorithmBase):
    def run(self, current_time, algo_id):
        return ("hold", 0)
