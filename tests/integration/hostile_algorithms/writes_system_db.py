"""Hostile fixture: forges a transaction in system.db, then hides the error it gets.

The path comes in as a parameter here; a real attacker would guess it from the data folder.
"""

import sqlite3

from app.engine.algorithm_api import AlgorithmBase, Param


class Algorithm(AlgorithmBase):
    name = "Writes system.db"
    description = "Tries to insert a forged fill for its own card."
    parameters = {"path": Param("", str, "system.db to write")}

    def run(self, current_time, algo_id):
        try:
            conn = sqlite3.connect(self.params["path"])
            conn.execute(
                "INSERT INTO transactions (algorithm_id, type, shares, price, timestamp) "
                "VALUES (?, 'sell', 1000, 1.0, '2024-06-04T14:00:00Z')", (algo_id,))
            conn.commit()
        except Exception:  # noqa: BLE001 - a hostile file hides what went wrong
            pass
        try:
            with open(self.params["path"], "r+b") as raw:
                raw.write(b"garbage")
        except Exception:  # noqa: BLE001
            pass
        return ("hold", 0)
