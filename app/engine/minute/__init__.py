"""A trading minute: the scheduling policy, the trading cycle (decision, risk check, journal,
submit, fill), the risk guard, the order journal and the per-symbol netting of the cards' orders.
"""
