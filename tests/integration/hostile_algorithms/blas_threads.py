"""Fails unless its process runs OpenBLAS with the thread count the worker sets (one by default)."""

import os

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "BLAS threads"
    description = "Checks the backtest worker's OpenBLAS thread setting."

    def run(self, current_time, algo_id):
        if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
            raise RuntimeError(f"OPENBLAS_NUM_THREADS is {os.environ.get('OPENBLAS_NUM_THREADS')!r}")
        return ("hold", 0)
