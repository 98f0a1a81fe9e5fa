"""Hostile fixture: allocates memory without end in run(), 16 MB at a time."""

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Memory bomb"
    description = "Keeps allocating until something stops it."

    def run(self, current_time, algo_id):
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
