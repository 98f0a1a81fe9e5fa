"""Hostile fixture: ends the process that imports it."""

import os

from app.engine.algorithm_api import AlgorithmBase

os._exit(1)


class Algorithm(AlgorithmBase):
    def run(self, current_time, algo_id):
        return ("hold", 0)
