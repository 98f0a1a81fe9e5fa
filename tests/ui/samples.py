"""Sample engine values for UI tests and screenshots (real dataclasses, no engine)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from app.engine.events import AccountSummary, CardSnapshot, MarketStatus, StreamStatus, TradeMarker

SESSION_START = int(datetime(2025, 3, 14, 13, 30, tzinfo=timezone.utc).timestamp())
NOW = datetime(2025, 3, 14, 16, 5, tzinfo=timezone.utc)


def wave(n: int, start: float, drift: float, seed: int) -> tuple[float, ...]:
    """A deterministic, market-looking price path."""
    return tuple(round(start + drift * i / n + 1.8 * math.sin(i / (7 + seed)) + 0.9 * math.sin(i / (2.3 + seed)), 2)
                 for i in range(n))


def snapshot(instance_id: int = 1, *, pnl: str = "0", price: str | None = "100.00", shares: int = 10,
             faulted: str | None = None, refused: str | None = None, name: str | None = None,
             ticker: str = "AAPL", spark: tuple[float, ...] | None = None,
             markers: tuple[TradeMarker, ...] = ()) -> CardSnapshot:
    """A CardSnapshot with consistent figures around a $10,000 card."""
    capital = Decimal("10000")
    pnl_d = Decimal(pnl)
    return CardSnapshot(
        instance_id=instance_id,
        display_name=name or f"{ticker} SMA #{instance_id}",
        ticker=ticker,
        algorithm_type="sma_crossover",
        algorithm_name="SMA Crossover",
        label="SMA 20/50",
        params_text="fast 20 · slow 50",
        initial_capital=capital,
        shares=shares if price is not None else 0,
        trade_count=3 if price is not None else 0,
        price=None if price is None else Decimal(price),
        price_time=None if price is None else NOW,
        value=capital + pnl_d,
        uninvested=Decimal("9000"),
        pnl=pnl_d,
        pnl_pct=pnl_d / capital * 100,
        last_action=None if price is None else "BUY 10 @ 98.20 at 14:32",
        faulted_reason=faulted,
        refused_reason=refused,
        sparkline=() if price is None else (spark if spark is not None else wave(150, 98, 2, instance_id)),
        sparkline_start=None if price is None else SESSION_START,
        markers=markers,
    )


def sample_cards() -> tuple[CardSnapshot, ...]:
    """Profit, loss, waiting, faulted and refused cards."""
    return (
        snapshot(1, pnl="312.40", price="187.42", ticker="AAPL", name="Apple trend",
                 spark=wave(156, 182, 5, 1),
                 markers=(TradeMarker(SESSION_START + 20 * 60, "buy", 16, Decimal("181.9")),
                          TradeMarker(SESSION_START + 110 * 60, "sell", 6, Decimal("186.1")))),
        snapshot(2, pnl="-148.75", price="411.08", ticker="MSFT", name="Microsoft dips", shares=12,
                 spark=wave(156, 418, -7, 2),
                 markers=(TradeMarker(SESSION_START + 40 * 60, "buy", 12, Decimal("416.2")),)),
        snapshot(3, price=None, ticker="NVDA", name="Nvidia lots"),
        snapshot(4, pnl="-20.10", price="242.17", ticker="TSLA", name="Tesla test",
                 faulted="run() raised ZeroDivisionError: division by zero (line 41)"),
        snapshot(5, pnl="0", price="512.90", ticker="SPY", name="Index hold", shares=0,
                 refused="buy 30 costs $15,387.00, more than the card's $9,000.00 cash"),
    )


def sample_market(open_: bool = True) -> MarketStatus:
    """An open (or closed) market status."""
    return MarketStatus(is_open=open_, now=NOW, next_open=NOW + timedelta(hours=21, minutes=25),
                        next_close=NOW + timedelta(hours=3, minutes=55))


def sample_stream(state: str = "live", reason: str | None = None) -> StreamStatus:
    """A stream status."""
    return StreamStatus(state=state, reason=reason)


def sample_account(mode: str = "paper", *, halted: bool = False) -> AccountSummary:
    """An account summary."""
    return AccountSummary(mode=mode, available_cash=Decimal("40125.50"), total_pnl=Decimal("143.55"),
                          halted=halted, value=Decimal("59873.25"), day_pnl=Decimal("-212.40"))
