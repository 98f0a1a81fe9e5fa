"""Fixture: an algorithm that forgets to return."""

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Returns None"
    description = "Forgets its return statement."

    def run(self, current_time, algo_id):
        self.last_price()
