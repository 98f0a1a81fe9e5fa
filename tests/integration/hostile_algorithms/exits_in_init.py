"""Hostile fixture: ends its process while being constructed."""

import os

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Exits in init"
    description = "Calls os._exit(4) in its constructor."

    def __init__(self, ticker, initial_capital, **params):
        super().__init__(ticker, initial_capital, **params)
        os._exit(4)

    def run(self, current_time, algo_id):
        return ("hold", 0)
