"""Hostile fixture: ends its own process from run() (os._exit skips every handler)."""

import os

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Exits"
    description = "Calls os._exit(3) on its first call."

    def run(self, current_time, algo_id):
        os._exit(3)
