"""A trading minute: the scheduling policy, the trading cycle (decision, risk check, journal,
submit, fill), the risk guard and the order journal.
"""
