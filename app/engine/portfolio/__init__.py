"""Money and cards: the money rules, the per-card ledger of fills and the card snapshots the kiosk shows."""
