"""Kiosk widgets. No SQL and no network: everything goes through the engine client."""
