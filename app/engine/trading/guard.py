"""The last check before any order leaves the engine. A refusal is a sentence, never an exception.

The live trading cycle and the backtest both judge every decision with :func:`refusal`: each
refusal sentence exists here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.engine.brokers.protocol import AccountRules

# The pattern-day-trader rule as Alpaca enforced it: a margin account under $25,000 may make at most
# three day trades (a buy and a sell of one symbol in one session) in five sessions.
PDT_EQUITY_MINIMUM = Decimal(25000)
PDT_MAX_DAY_TRADES = 3

ORDER_STILL_OPEN = "an earlier order of this card is still open"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One decision about to become an order, with the facts the guard judges it on."""

    side: str  # 'buy' | 'sell'
    shares: int
    price: Decimal | None  # latest price; None when no bar has arrived yet
    instance_uninvested: Decimal  # the card's uninvested cash, less cash reserved by open orders
    instance_shares: int  # the card's shares, less shares already being sold
    market_open: bool
    halted: bool
    # The card has an order not yet final: one open order per card at a time.
    order_open: bool = False
    # Shares every running card holds in this symbol, and what the broker really holds.
    symbol_shares_all_instances: int = 0
    broker_position: int | None = None
    # A sell of a symbol the account bought this session, and the account's day-trade facts.
    completes_day_trade: bool = False
    account: AccountRules | None = None


def day_trade_limited(account: AccountRules | None) -> bool:
    """True for a margin account under $25,000 whose broker reports its day-trade count.

    Cash accounts, accounts of $25,000 or more and brokers that report no count (Alpaca since
    FINRA retired the rule, the simulator) are not limited.
    """
    return (account is not None and account.margin and account.daytrade_count is not None
            and account.equity is not None and account.equity < PDT_EQUITY_MINIMUM)


def describe_day_trading(account: AccountRules) -> str:
    """One line for ``autotrader status``: the account kind and whether day trades are limited."""
    kind = "margin" if account.margin else "cash"
    equity = "" if account.equity is None else f", equity ${account.equity:,.2f}"
    if account.daytrade_count is None:
        return (f"{kind} account{equity}; the broker reports no day-trade count, so day trades are "
                "not limited")
    flag = " (flagged pattern day trader)" if account.pattern_day_trader else ""
    counted = f"{account.daytrade_count} day trade(s) in the last 5 sessions{flag}"
    if day_trade_limited(account):
        left = max(0, PDT_MAX_DAY_TRADES - account.daytrade_count)
        return (f"{kind} account{equity}; {counted}; under ${PDT_EQUITY_MINIMUM:,.0f}: {left} more "
                "allowed")
    return f"{kind} account{equity}; {counted}; not limited"


def refusal(req: OrderRequest) -> str | None:
    """Return why the order must not be sent, or None if it may go.

    Rules: the card has no other order open (one at a time), the halt switch is off, the market is
    open, at least one whole share, a buy costs no more than the card's uninvested cash at the
    latest price, a sell never exceeds the card's shares (no shorting), sells never exceed what the
    broker actually holds in the symbol, and on a day-trade limited account
    (:func:`day_trade_limited`) no sell that would be a 4th day trade in five sessions.
    """
    if req.order_open:
        return ORDER_STILL_OPEN
    if req.halted:
        return "trading is halted for the whole account"
    if not req.market_open:
        return "the market is closed"
    if req.side not in ("buy", "sell"):
        return f"unknown side {req.side!r}"
    if req.shares < 1:
        return "an order needs at least one whole share"
    if req.side == "buy":
        if req.price is None or req.price <= 0:
            return "no price yet for this ticker"
        cost = req.price * req.shares
        if cost > req.instance_uninvested:
            return (f"buying {req.shares} shares costs about ${cost:,.2f}, more than the card's "
                    f"uninvested ${max(req.instance_uninvested, Decimal(0)):,.2f}")
        return None
    if req.shares > req.instance_shares:
        return f"cannot sell {req.shares} shares: the card holds {max(req.instance_shares, 0)} (no short selling)"
    if req.broker_position is not None and req.shares > req.broker_position:
        return (f"cannot sell {req.shares} shares: the broker account holds only "
                f"{req.broker_position} (cards together claim {req.symbol_shares_all_instances})")
    account = req.account
    if req.completes_day_trade and day_trade_limited(account) and account is not None \
            and account.daytrade_count is not None and account.daytrade_count >= PDT_MAX_DAY_TRADES:
        return (f"selling now would be a day trade, and the account has made {account.daytrade_count} in "
                f"the last 5 sessions: a margin account under ${PDT_EQUITY_MINIMUM:,.0f} may make only "
                f"{PDT_MAX_DAY_TRADES} (pattern-day-trader rule)")
    return None
