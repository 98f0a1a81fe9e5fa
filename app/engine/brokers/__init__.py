"""What a broker is to the engine: the Broker protocol, order state, the broker errors and the one
check of order arguments. Implementations live in sim/ and alpaca/.
"""
