"""Buy the dip in lots; each lot leaves on its own take-profit or stop-loss.

Lots are derived from the card's transactions alone, so a restart changes nothing; between runs
only the fills recorded since the last run are replayed (a card trading for months would
otherwise replay its whole history every minute). A sell is matched to the lot it closed: the lot of exactly that size
whose exit rule the sell price meets, else a lot of that size, else a lot whose exit the price
meets, oldest first; any remainder (partial fills, manual sells) is taken FIFO.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.engine.algorithm_api import AlgorithmBase, Param, parse_utc_text, to_epoch


@dataclass(eq=False)
class Lot:
    """An open lot: entry price, shares still held and the entry time (epoch seconds)."""

    price: float
    shares: int
    opened_ts: int


def _epoch(timestamp: Any) -> int:
    return to_epoch(timestamp) if isinstance(timestamp, datetime) else to_epoch(parse_utc_text(str(timestamp)))


class Algorithm(AlgorithmBase):
    """Dip buying in lots with per-lot take-profit and stop-loss exits."""

    name = "Lot exits"
    description = "Buys a lot when the price drops from its recent high; each lot exits at its own target or stop."
    parameters = {
        "lookback": Param(30, int, "bars in the recent-high window (also the wait between two buys)", min=2, max=5000),
        "entry_drop_pct": Param(2.0, float, "buy when the close is this % below the window's high", min=0.01, max=90),
        "lot_size_pct": Param(25.0, float, "each lot spends up to this % of the initial capital", min=1, max=100),
        "take_profit_pct": Param(3.0, float, "sell a lot this % above its entry price", min=0.01, max=1000),
        "stop_loss_pct": Param(2.0, float, "sell a lot this % below its entry price", min=0.01, max=99),
    }

    def exit_hit(self, lot: Lot, price: float) -> bool:
        """True when ``price`` reaches the lot's take-profit or stop-loss."""
        return (price >= lot.price * (1 + self.params["take_profit_pct"] / 100)
                or price <= lot.price * (1 - self.params["stop_loss_pct"] / 100))

    def open_lots(self) -> list[Lot]:
        """Lots still held, oldest first, replayed from this card's transactions."""
        transactions = self.transactions()
        done, lots, last = getattr(self, "_replayed", (0, [], None))
        if done > len(transactions) or (done and transactions[done - 1] != last):
            done, lots = 0, []  # the history is not the one replayed before: start over
        for tx in transactions[done:]:
            lots = self._replay(lots, tx)
        self._replayed = (len(transactions), lots, transactions[-1] if transactions else None)
        return list(lots)

    def _replay(self, lots: list[Lot], tx: Any) -> list[Lot]:
        if tx.type == "buy":
            return [*lots, Lot(float(tx.price), int(tx.shares), _epoch(tx.timestamp))]
        lots = [Lot(lot.price, lot.shares, lot.opened_ts) for lot in lots]  # earlier results stay as returned
        remaining = int(tx.shares)
        target = self._sold_lot(lots, remaining, float(tx.price))
        order = ([target] if target is not None else []) + [lot for lot in lots if lot is not target]
        for lot in order:
            taken = min(lot.shares, remaining)
            lot.shares -= taken
            remaining -= taken
            if remaining == 0:
                break
        return [lot for lot in lots if lot.shares > 0]

    def _sold_lot(self, lots: list[Lot], shares: int, price: float) -> Lot | None:
        same_size = [lot for lot in lots if lot.shares == shares]
        hit = [lot for lot in lots if self.exit_hit(lot, price)]
        for group in ([lot for lot in same_size if lot in hit], same_size, hit):
            if group:
                return group[0]
        return None

    def run(self, current_time: datetime, algo_id: int) -> tuple[str, int]:
        """Exit the oldest lot whose target or stop is reached; otherwise maybe open a new lot."""
        lookback = self.params["lookback"]
        bars = self.bars_before(lookback)
        if not bars:
            return ("hold", 0)
        price = bars[-1].close
        for lot in self.open_lots():
            if self.exit_hit(lot, price):
                return ("sell", lot.shares)

        if len(bars) < lookback:
            return ("hold", 0)
        recent_high = max(bar.high for bar in bars)
        if price > recent_high * (1 - self.params["entry_drop_pct"] / 100):
            return ("hold", 0)
        last_buy = next((tx for tx in reversed(self.transactions()) if tx.type == "buy"), None)
        if last_buy is not None and _epoch(last_buy.timestamp) >= bars[0].ts:
            return ("hold", 0)  # at most one new lot per window
        lot_cash = self.capital * Decimal(str(self.params["lot_size_pct"])) / 100
        budget = min(self.uninvested_cash(), lot_cash)
        shares = self.affordable_shares(price, budget)
        return ("buy", shares) if shares > 0 else ("hold", 0)
