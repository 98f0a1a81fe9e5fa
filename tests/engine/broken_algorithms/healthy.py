"""Fixture: a well-behaved algorithm that buys a fixed number of shares while it has data."""

from app.engine.algorithm_api import AlgorithmBase, Param


class Algorithm(AlgorithmBase):
    name = "Healthy"
    description = "Buys `shares` whenever it has a price."
    parameters = {"shares": Param(3, int, "shares per buy", min=1)}

    def run(self, current_time, algo_id):
        return ("buy", self.params["shares"]) if self.last_price() is not None else ("hold", 0)
