"""The simulated broker's fill rule and the price a fill is booked at, shared by SimBroker and the backtest.

A market order decided in minute M fills completely at the open of the first bar with ``ts >= M``
(the bar after the last one the algorithm could see), moved against the trader by the slippage:
buys pay more, sells get less. SimBroker finds that bar in the market store, the backtest in its
arrays; both price it here.
"""

from __future__ import annotations

import math
from decimal import Decimal

MAX_SLIPPAGE_BPS = 10_000
_BPS = Decimal(10_000)


def check_slippage(bps: object) -> float:
    """``bps`` as a float if it is a usable slippage in basis points (0 <= bps < 10000); else ValueError."""
    if isinstance(bps, bool) or not isinstance(bps, (int, float)) or not math.isfinite(bps) \
            or not 0 <= bps < MAX_SLIPPAGE_BPS:
        raise ValueError(f"slippage must be between 0 and {MAX_SLIPPAGE_BPS} basis points, got {bps!r}")
    return float(bps)


class FillRule:
    """Fill prices at a slippage of ``slippage_bps`` basis points (validated by :func:`check_slippage`).

    ``up`` and ``down`` are the factors buys and sells are moved by, exact Decimals.
    """

    __slots__ = ("slippage_bps", "up", "down")

    def __init__(self, slippage_bps: float = 0.0) -> None:
        self.slippage_bps = check_slippage(slippage_bps)
        slip = Decimal(str(slippage_bps)) / _BPS
        self.up = 1 + slip
        self.down = 1 - slip

    def price(self, side: str, bar_open: float) -> Decimal:
        """The price an order of ``side`` gets at a bar opening at ``bar_open``."""
        base = Decimal(str(bar_open))
        return base * self.up if side == "buy" else base * self.down

    def buy_cost(self, shares: int, price: Decimal) -> Decimal:
        """What buying ``shares`` at a bar opening at ``price`` would cost: the broker's funds check."""
        return shares * price * self.up


def booked_price(fill_price: Decimal) -> float:
    """The price a fill is recorded at: the transactions table keeps a REAL, and every figure is
    summed from what it keeps (read back through ``str``, see ``portfolio.money.to_decimal``)."""
    return float(fill_price)
