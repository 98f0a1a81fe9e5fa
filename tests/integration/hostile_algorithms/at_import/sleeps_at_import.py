"""Hostile fixture: sleeps 60 s while its module is imported."""

import time

from app.engine.algorithm_api import AlgorithmBase

time.sleep(60)


class Algorithm(AlgorithmBase):
    def run(self, current_time, algo_id):
        return ("hold", 0)
