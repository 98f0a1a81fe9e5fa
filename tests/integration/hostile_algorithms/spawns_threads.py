"""Hostile fixture: starts a thread on every call and leaves it running."""

import threading
import time

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    name = "Spawns threads"
    description = "Each call starts a thread that spins for a minute."

    def run(self, current_time, algo_id):
        def spin():
            until = time.monotonic() + 60
            while time.monotonic() < until:
                pass

        threading.Thread(target=spin, daemon=True).start()
        return ("hold", 0)
