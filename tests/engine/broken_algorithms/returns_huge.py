"""Fixture: an algorithm that asks for an absurd share count."""

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Returns huge"
    description = "Buys a billion shares."

    def run(self, current_time, algo_id):
        return ("buy", 10**9)
