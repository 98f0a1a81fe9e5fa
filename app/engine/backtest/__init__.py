"""Backtests: replaying an algorithm file over stored bars, and running those replays off the UI thread."""
