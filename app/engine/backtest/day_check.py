"""Live against its own backtest: a card's trading day compared with the replay of the same day.

After the close the engine replays each card's day over the same stored bars, from the card's own
book at the open (its earlier fills), and compares what live did with what the backtest did: the
fills the live card missed or added, the slippage of each fill both made (the live fill price
against the backtest's, in basis points; positive means live did worse), and the difference in the
card's value at the day's last close. A day ``diverged`` when a fill was missed or added, or when
the values differ by more than the threshold (``DEFAULT_THRESHOLD_PCT`` of the card's capital
unless the setting says otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from app.engine.portfolio.money import format_money, to_decimal
from app.storage.records import TransactionRecord
from app.storage.timefmt import parse_utc_text, utc_text

DEFAULT_THRESHOLD_PCT = 0.5  # of the card's capital: a day whose value differs more is a divergence
_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class DayFill:
    """One order's fill on one side of the comparison: decision minute, side, shares, average price."""

    decided_at: datetime | None  # None: a live fill whose order id does not say (adopted from the broker)
    side: str
    shares: int
    price: Decimal


@dataclass(frozen=True, slots=True)
class FillPair:
    """A decision both live and the backtest filled; ``slippage_bps`` > 0 when live paid more (buy)
    or received less (sell) than the backtest."""

    live: DayFill
    backtest: DayFill

    @property
    def slippage_bps(self) -> float:
        """The live price against the backtest's, in basis points, signed so that worse is positive."""
        if self.backtest.price == 0:
            return 0.0
        move = (self.live.price - self.backtest.price) / self.backtest.price * _BPS
        return float(move if self.live.side == "buy" else -move)


@dataclass(frozen=True)
class DayCheck:
    """How one card's live day compares with the backtest of that day (or why it could not be run)."""

    card_id: int
    day: date
    pairs: tuple[FillPair, ...] = ()
    missed: tuple[DayFill, ...] = ()  # the backtest filled them, live did not
    added: tuple[DayFill, ...] = ()  # live filled them, the backtest did not
    live_value: Decimal = Decimal(0)  # the card's value at the day's last close
    backtest_value: Decimal = Decimal(0)
    threshold: Decimal = Decimal(0)  # dollars
    error: str | None = None  # the replay failed: no comparison
    pending: int = 0  # decisions still open at the broker when checked (e.g. the last minute's, in sim)

    @property
    def value_diff(self) -> Decimal:
        """Live's value minus the backtest's at the last close (negative: live did worse)."""
        return self.live_value - self.backtest_value

    @property
    def live_fills(self) -> int:
        """Orders live filled that day."""
        return len(self.pairs) + len(self.added)

    @property
    def slippage_bps(self) -> float | None:
        """Share-weighted mean slippage of the paired fills (None without one)."""
        shares = sum(p.live.shares for p in self.pairs)
        if not shares:
            return None
        return sum(p.slippage_bps * p.live.shares for p in self.pairs) / shares

    @property
    def diverged(self) -> bool:
        """A fill missed or added, or values further apart than the threshold."""
        return self.error is None and bool(self.missed or self.added or abs(self.value_diff) > self.threshold)

    def text(self) -> str:
        """One line for the card's detail view and ``status``: "live −$4.10 vs backtest, 2 fills, ..."."""
        if self.error is not None:
            return f"no backtest comparison: {self.error}"
        parts = [f"live {format_money(self.value_diff, signed=True)} vs backtest",
                 f"{self.live_fills} fill{'s' if self.live_fills != 1 else ''}"]
        if self.slippage_bps is not None:
            parts.append(f"slippage {self.slippage_bps:.1f} bps")
        if self.missed:
            parts.append(f"{len(self.missed)} missed")
        if self.added:
            parts.append(f"{len(self.added)} added")
        if self.pending:
            parts.append(f"{self.pending} still open")
        return ", ".join(parts)

    def to_json(self) -> str:
        """The check as JSON text (kept in system.db's config, one key per card)."""
        return json.dumps({
            "card": self.card_id, "day": self.day.isoformat(),
            "pairs": [[_fill_json(p.live), _fill_json(p.backtest)] for p in self.pairs],
            "missed": [_fill_json(f) for f in self.missed], "added": [_fill_json(f) for f in self.added],
            "live_value": str(self.live_value), "backtest_value": str(self.backtest_value),
            "threshold": str(self.threshold), "error": self.error, "pending": self.pending,
        })

    @classmethod
    def from_json(cls, text: str) -> DayCheck:
        """Read back ``to_json``; raises ValueError on text it did not write."""
        try:
            data = json.loads(text)
            return cls(
                card_id=int(data["card"]), day=date.fromisoformat(data["day"]),
                pairs=tuple(FillPair(_fill(a), _fill(b)) for a, b in data["pairs"]),
                missed=tuple(_fill(f) for f in data["missed"]), added=tuple(_fill(f) for f in data["added"]),
                live_value=Decimal(data["live_value"]), backtest_value=Decimal(data["backtest_value"]),
                threshold=Decimal(data["threshold"]), error=data["error"], pending=int(data.get("pending", 0)))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"not a day check: {exc}") from None


def _fill_json(fill: DayFill) -> list[Any]:
    return [utc_text(fill.decided_at) if fill.decided_at else None, fill.side, fill.shares, str(fill.price)]


def _fill(row: Sequence[Any]) -> DayFill:
    decided, side, shares, price = row
    return DayFill(parse_utc_text(decided) if decided else None, str(side), int(shares), Decimal(price))


def live_day_fills(transactions: Iterable[TransactionRecord],
                   decided_at: Callable[[str | None], datetime | None]) -> list[DayFill]:
    """The card's fills of the day, one per order (partial fills of one order summed, price averaged)."""
    orders: dict[tuple[str | None, int], list[TransactionRecord]] = {}
    for tx in transactions:
        # Fills without an order id of ours cannot be grouped: each stands alone.
        key = (tx.client_order_id, 0) if tx.client_order_id else (None, tx.id)
        orders.setdefault(key, []).append(tx)
    fills = []
    for (coid, _), txs in orders.items():
        shares = sum(t.shares for t in txs)
        paid = sum((t.shares * to_decimal(t.price, "fill price") for t in txs), Decimal(0))
        price = paid / shares if shares else Decimal(0)
        fills.append(DayFill(decided_at(coid), txs[0].type, shares, price))
    return fills


def compare_day(card_id: int, day: date, live: Sequence[DayFill], backtest: Sequence[DayFill], *,
                live_value: Decimal, backtest_value: Decimal, threshold: Decimal,
                pending: Iterable[tuple[datetime, str]] = ()) -> DayCheck:
    """Pair live and backtest fills by decision minute and side; the rest are missed or added.

    ``pending`` are live decisions (minute, side) whose orders were still open when checked: the
    backtest's fills of those are neither paired nor missed.
    """
    still_open = set(pending)
    waiting = {(f.decided_at, f.side): f for f in backtest if (f.decided_at, f.side) not in still_open}
    held = len(backtest) - len(waiting)
    pairs, added = [], []
    for fill in live:
        match = waiting.pop((fill.decided_at, fill.side), None) if fill.decided_at is not None else None
        if match is None:
            added.append(fill)
        else:
            pairs.append(FillPair(fill, match))
    missed = [f for f in backtest if (f.decided_at, f.side) in waiting]
    return DayCheck(card_id, day, tuple(pairs), tuple(missed), tuple(added), live_value, backtest_value,
                    threshold, pending=held)


def threshold_for(capital: Decimal, pct: float = DEFAULT_THRESHOLD_PCT) -> Decimal:
    """The value difference (dollars) beyond which a day counts as diverged."""
    return (capital * Decimal(str(pct)) / 100).quantize(Decimal("0.01"))
