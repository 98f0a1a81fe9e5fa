"""Fixture: an Algorithm class that does not subclass AlgorithmBase (the seed's shape)."""


class Algorithm:
    def __init__(self, ticker, initial_capital):
        self.ticker = ticker

    def run(self, current_time, algo_id):
        return ("hold", 0)
