"""Fixture: an algorithm that sleeps past any sensible time budget."""

import time

from app.engine.algorithm_api import AlgorithmBase, Param


class Algorithm(AlgorithmBase):
    name = "Sleeps"
    description = "Sleeps before holding."
    parameters = {"seconds": Param(1.0, float, "how long to sleep", min=0)}

    def run(self, current_time, algo_id):
        time.sleep(self.params["seconds"])
        return ("hold", 0)
