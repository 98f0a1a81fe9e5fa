"""AutoTrader: a wall-mounted trading terminal (PySide6 kiosk, Alpaca brokerage, pluggable algorithms)."""

__version__ = "0.1.0"
