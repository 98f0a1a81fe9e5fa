"""Buy and hold: spend the card's cash on the first minute with a price, then never trade again."""

from __future__ import annotations

from datetime import datetime

from app.engine.algorithm_api import AlgorithmBase


class Algorithm(AlgorithmBase):
    """All in at the first price, held forever: the benchmark every other algorithm must beat."""

    name = "Buy and hold"
    label = "Buy & hold"
    description = "Buys as many shares as the capital allows at the first price, then holds forever."

    def run(self, current_time: datetime, algo_id: int) -> tuple[str, int]:
        """Buy once, when no buy has ever been recorded for this card."""
        if any(tx.type == "buy" for tx in self.transactions()):
            return ("hold", 0)
        shares = self.affordable_shares(self.last_price())
        return ("buy", shares) if shares > 0 else ("hold", 0)
