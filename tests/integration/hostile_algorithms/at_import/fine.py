"""Fixture: an ordinary file beside the hostile ones; the catalogue must still describe it."""

from app.engine.algorithm_api import AlgorithmBase, Param


class Algorithm(AlgorithmBase):
    name = "Fine"
    description = "Holds."
    parameters = {"n": Param(2, int, "a number")}

    def run(self, current_time, algo_id):
        return ("hold", 0)
