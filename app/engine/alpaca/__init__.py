"""Everything that talks to Alpaca through alpaca-py: REST clients, the Alpaca broker, historical
bars, the live bar stream and its feed. alpaca-py's private members are touched in one module
only (sdk).
"""
