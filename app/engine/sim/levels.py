"""Approximate price levels of well-known tickers, so the simulated walk starts somewhere believable.

These are rounded orders of magnitude around mid-2025, typed in by hand: not quotes, not a data
feed, never shown as real. Each entry is (price level in dollars, yearly volatility); the
simulation passes near the level at :data:`REFERENCE_SESSION` and wanders from it as usual.
Tickers not listed keep a price drawn from their hash.
"""

from __future__ import annotations

from datetime import date

REFERENCE_SESSION = date(2025, 6, 2)

LEVELS: dict[str, tuple[float, float]] = {
    "AAPL": (200.0, 0.28), "MSFT": (460.0, 0.25), "NVDA": (140.0, 0.50), "GOOGL": (170.0, 0.30),
    "GOOG": (170.0, 0.30), "AMZN": (210.0, 0.32), "META": (680.0, 0.38), "TSLA": (330.0, 0.60),
    "AVGO": (250.0, 0.45), "AMD": (115.0, 0.50), "INTC": (20.0, 0.45), "NFLX": (1200.0, 0.35),
    "ORCL": (165.0, 0.35), "CRM": (275.0, 0.32), "ADBE": (410.0, 0.32), "IBM": (260.0, 0.25),
    "JPM": (265.0, 0.22), "V": (360.0, 0.20), "MA": (580.0, 0.20), "BAC": (44.0, 0.25),
    "WMT": (97.0, 0.20), "KO": (71.0, 0.15), "PEP": (130.0, 0.18), "DIS": (112.0, 0.28),
    "XOM": (105.0, 0.25), "CVX": (140.0, 0.25), "T": (28.0, 0.20), "PFE": (23.0, 0.25),
    "JNJ": (155.0, 0.15), "UNH": (300.0, 0.35), "COST": (1030.0, 0.20), "HD": (370.0, 0.22),
    "MCD": (310.0, 0.16), "NKE": (60.0, 0.35), "BA": (210.0, 0.35), "PLTR": (130.0, 0.65),
    "SPY": (590.0, 0.17), "QQQ": (520.0, 0.22), "IWM": (205.0, 0.22), "DIA": (420.0, 0.15),
    "VOO": (545.0, 0.17), "VTI": (290.0, 0.17),
}
