"""Hostile fixture: a constructor that blocks for a minute (e.g. waiting on a network call)."""

import time

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Blocks in init"
    description = "Sleeps 60 s while being constructed."

    def __init__(self, ticker, initial_capital, **params):
        super().__init__(ticker, initial_capital, **params)
        time.sleep(60)

    def run(self, current_time, algo_id):
        return ("hold", 0)
