"""Fixture: an algorithm written for a future interface version."""

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    interface_version = 99

    def run(self, current_time, algo_id):
        return ("hold", 0)
