"""Fixture: an algorithm whose run() divides by zero."""

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Raises"
    description = "Divides by zero on every run."

    def run(self, current_time, algo_id):
        empty = []
        return ("buy", len(empty) // len(empty))
