"""Fixture: an algorithm that asks to buy a negative share count."""

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Returns negative"
    description = "Buys -5 shares."

    def run(self, current_time, algo_id):
        return ("buy", -5)
