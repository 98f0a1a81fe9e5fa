"""Simple moving-average crossover: buy when the fast SMA crosses above the slow one, sell all
when it crosses back below."""

from __future__ import annotations

from datetime import datetime

from app.engine.algorithm_api import AlgorithmBase, AlgorithmParamError, Param


class Algorithm(AlgorithmBase):
    """Fast/slow SMA crossover on minute closes; all in on a cross up, all out on a cross down."""

    name = "SMA crossover"
    description = "Buys when the fast moving average crosses above the slow one; sells everything on the cross back."
    parameters = {
        "fast": Param(20, int, "bars in the fast moving average", min=1),
        "slow": Param(50, int, "bars in the slow moving average", min=2),
    }

    def check_params(self) -> None:
        """The fast average must be shorter than the slow one."""
        if self.params["fast"] >= self.params["slow"]:
            raise AlgorithmParamError(
                f"fast ({self.params['fast']}) must be smaller than slow ({self.params['slow']})")

    def run(self, current_time: datetime, algo_id: int) -> tuple[str, int]:
        """Compare both averages over the previous window and the current one."""
        fast, slow = self.params["fast"], self.params["slow"]
        bars = self.bars_before(slow + 1)
        if len(bars) < slow + 1:
            return ("hold", 0)
        # Closes as whole hundredths of a cent: integer sums are exact, so a tie is a tie whatever
        # the order of the additions (float sums differ by ~1e-14 and flip about 1.5 % of fills).
        # fast average > slow average  <=>  fast sum * slow > slow sum * fast: no division needed.
        ticks = [round(bar.close * 10_000) for bar in bars]
        fast_now = sum(ticks[-fast:]) * slow
        slow_now = sum(ticks[1:]) * fast
        if fast_now == slow_now:
            return ("hold", 0)  # no cross either way
        # Only one direction is possible now, and the position rules it out on most minutes:
        # the averages of the minute before are computed only when a trade could follow.
        held = self.position()
        if fast_now > slow_now:
            if held == 0 and sum(ticks[-fast - 1:-1]) * slow <= sum(ticks[:-1]) * fast:
                shares = self.affordable_shares(bars[-1].close)
                if shares > 0:
                    return ("buy", shares)
        elif held > 0 and sum(ticks[-fast - 1:-1]) * slow >= sum(ticks[:-1]) * fast:
            return ("sell", held)
        return ("hold", 0)
