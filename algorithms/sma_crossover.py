"""Simple moving-average crossover: buy when the fast SMA crosses above the slow one, sell all
when it crosses back below."""

from __future__ import annotations

from datetime import datetime

from app.engine.algorithm_api import AlgorithmBase, AlgorithmParamError, Param


class Algorithm(AlgorithmBase):
    """Fast/slow SMA crossover on minute closes; all in on a cross up, all out on a cross down."""

    name = "SMA crossover"
    label = "SMA {fast}/{slow}"
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
        closes = self.closes_before(slow + 1)
        if len(closes) < slow + 1:
            return ("hold", 0)
        # fast average > slow average  <=>  fast sum * slow > slow sum * fast, on integer sums
        # (see _ticks): a tie is a tie whatever the order of the additions.
        fast_now = _ticks(closes[-fast:]) * slow
        slow_now = _ticks(closes[1:]) * fast
        if fast_now == slow_now:
            return ("hold", 0)  # no cross either way
        # Only one direction is possible now, and the position rules it out on most minutes:
        # the averages of the minute before are computed only when a trade could follow.
        held = self.position()
        if fast_now > slow_now:
            if held == 0 and _ticks(closes[-fast - 1:-1]) * slow <= _ticks(closes[:-1]) * fast:
                shares = self.affordable_shares(closes[-1])
                if shares > 0:
                    return ("buy", shares)
        elif held > 0 and _ticks(closes[-fast - 1:-1]) * slow >= _ticks(closes[:-1]) * fast:
            return ("sell", held)
        return ("hold", 0)


def _ticks(prices: list[float]) -> int:
    """The sum of ``prices`` in whole hundredths of a cent (prices are quoted to at most 4 decimals).

    A float sum is off by far less than half a hundredth of a cent (about 1e-11 dollars for 50
    prices of $100), so rounding it gives the exact integer whatever order the additions ran in;
    compared unrounded, ties came out as +-1e-14 and about 1.5 % of fills flipped with the order.
    """
    return round(sum(prices) * 10_000)
