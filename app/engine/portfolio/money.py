"""Card maths: position, invested, uninvested, value and P&L derived from transactions (DESIGN.md "Money").

All arithmetic is Decimal; floats are converted through ``str`` so 150.5 stays 150.5.
Nothing is rounded here except by the display formatters.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Iterable

ZERO = Decimal(0)
_CENT = Decimal("0.01")
_HUNDRED = Decimal(100)


def to_decimal(value: Any, what: str = "amount") -> Decimal:
    """``value`` as a finite Decimal; floats go through ``str`` so they keep their short form."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise TypeError(f"{what} must be a number, got a bool")
    elif isinstance(value, (int, float, str)):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{what} is not a number: {value!r}") from None
    else:
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{what} must be a finite number (got {value!r})")
    return result


@dataclass(frozen=True)
class CardFigures:
    """What one card shows. ``has_price`` False means "waiting for data": P&L is 0 and value is the capital."""

    shares: int
    trade_count: int
    invested: Decimal
    uninvested: Decimal
    price: Decimal | None
    value: Decimal
    pnl: Decimal
    pnl_pct: Decimal
    has_price: bool


class Position:
    """A card's running totals, fill by fill: shares (Σ buy − Σ sell), invested (Σ buy cost − Σ sell
    proceeds) and the fill count. The one place those sums are made: ``card_figures``, the card
    ledger and the backtest all book through :meth:`book`."""

    __slots__ = ("shares", "invested", "count")

    def __init__(self) -> None:
        self.shares = 0
        self.invested = ZERO
        self.count = 0

    def book(self, side: str, shares: int, price: Decimal) -> Decimal:
        """Take in one fill of ``shares`` at ``price``; returns its amount (shares × price)."""
        amount = shares * price
        if side == "buy":
            self.shares += shares
            self.invested += amount
        elif side == "sell":
            self.shares -= shares
            self.invested -= amount
        else:
            raise ValueError(f"transaction type must be 'buy' or 'sell' (got {side!r})")
        self.count += 1
        return amount

    def figures(self, initial_capital: Any, price: Any | None) -> CardFigures:
        """The card's figures at ``price`` (None or 0: no price yet)."""
        return figures_from_position(initial_capital, self.shares, self.invested, self.count, price)


def card_figures(initial_capital: Any, transactions: Iterable[Any], price: Any | None) -> CardFigures:
    """Derive a card's figures from its capital, its fills (with ``type``, ``shares``, ``price``) and the last price.

    ``price`` None or 0 means no price yet for the ticker.
    """
    position = Position()
    for tx in transactions:
        qty = tx.shares
        if isinstance(qty, bool) or not isinstance(qty, int) or qty < 0:
            raise ValueError(f"transaction shares must be a whole number >= 0 (got {qty!r})")
        fill_price = to_decimal(tx.price, "transaction price")
        if fill_price < 0:
            raise ValueError(f"transaction price must not be negative (got {fill_price})")
        position.book(tx.type, qty, fill_price)
    return position.figures(initial_capital, price)


def figures_from_position(initial_capital: Any, shares: int, invested: Decimal, trade_count: int,
                          price: Any | None) -> CardFigures:
    """A card's figures from its running totals (what ``card_figures`` sums from the transactions).

    ``invested`` is Σ buy cost − Σ sell proceeds; ``price`` None or 0 means no price yet.
    """
    capital = to_decimal(initial_capital, "initial capital")
    if capital < 0:
        raise ValueError(f"initial capital must not be negative (got {capital})")
    uninvested = capital - invested

    last = None if price is None else to_decimal(price, "price")
    if last is not None and last < 0:
        raise ValueError(f"price must not be negative (got {last})")
    if last is None or last == 0:
        return CardFigures(shares, trade_count, invested, uninvested, None, capital, ZERO, ZERO, False)

    value = shares * last + uninvested
    pnl = value - capital
    pnl_pct = pnl / capital * _HUNDRED if capital else ZERO
    return CardFigures(shares, trade_count, invested, uninvested, last, value, pnl, pnl_pct, True)


def realised_pnl(transactions: Iterable[Any]) -> Decimal:
    """Profit or loss booked by sells, at the average cost of the shares sold.

    A card that sold everything has realised exactly Σ sell proceeds − Σ buy cost; shares still held
    (a card stopped keeping its shares) count only at what their sells already booked.
    """
    shares = 0
    cost = ZERO  # cost basis of the shares held
    booked = ZERO
    proceeds_minus_cost = ZERO
    for tx in transactions:
        qty, price = tx.shares, to_decimal(tx.price, "transaction price")
        if tx.type == "buy":
            shares += qty
            cost += qty * price
            proceeds_minus_cost -= qty * price
        elif tx.type == "sell" and qty:
            proceeds_minus_cost += qty * price
            average = cost / shares if shares > 0 else price
            booked += qty * (price - average)
            cost -= qty * average
            shares -= qty
    return proceeds_minus_cost if shares == 0 else booked


def whole_shares(cash: Decimal, price: Decimal) -> int:
    """The sizing rule: whole shares ``cash`` buys at ``price``; 0 without a price or without cash."""
    if price <= 0 or cash <= 0:
        return 0
    return int(cash // price)


def available_cash(broker_cash: Any, running_uninvested: Iterable[Any]) -> Decimal:
    """Cash a new card may take: broker cash − Σ uninvested of running cards, never below 0.

    Money already invested by a card has left the broker's cash, so subtracting whole
    allocations (the seed's rule) would count it twice.
    """
    cash = to_decimal(broker_cash, "broker cash")
    reserved = sum((to_decimal(u, "uninvested") for u in running_uninvested), ZERO)
    return max(ZERO, cash - reserved)


def format_money(amount: Any, *, signed: bool = False) -> str:
    """``$1,234.56`` / ``-$12.00`` rounded half-up to cents; ``signed`` adds ``+`` to positive amounts."""
    cents = to_decimal(amount).quantize(_CENT, rounding=ROUND_HALF_UP)
    if cents == 0:
        return "$0.00"  # never "-$0.00"
    sign = "-" if cents < 0 else ("+" if signed else "")
    return f"{sign}${abs(cents):,.2f}"


def format_money_compact(amount: Any, *, signed: bool = False) -> str:
    """At most 9 characters for figures read from across the room: ``+$143.55`` below $1,000, whole
    dollars ``$59,000`` below a million, then ``$1.23M`` / ``$4.56B``. The exact amount is elsewhere."""
    value = to_decimal(amount)
    if abs(value.quantize(_CENT, rounding=ROUND_HALF_UP)) < 1000:
        return format_money(value, signed=signed)
    sign = "-" if value < 0 else ("+" if signed else "")
    size = abs(value)
    if size.quantize(Decimal(1), rounding=ROUND_HALF_UP) < 1_000_000:
        return f"{sign}${size.quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"
    millions = size / 1_000_000
    if millions < 1000:
        return f"{sign}${millions.quantize(_CENT, rounding=ROUND_HALF_UP)}M"
    return f"{sign}${(millions / 1000).quantize(_CENT, rounding=ROUND_HALF_UP)}B"


def format_pct(pct: Any, *, signed: bool = True) -> str:
    """``+2.91%`` / ``-0.50%`` / ``0.00%`` (two decimals, half-up); ``signed=False`` drops the ``+``."""
    hundredths = to_decimal(pct, "percentage").quantize(_CENT, rounding=ROUND_HALF_UP)
    if hundredths == 0:
        return "0.00%"
    sign = "-" if hundredths < 0 else ("+" if signed else "")
    return f"{sign}{abs(hundredths):,.2f}%"
