"""The simulated market: synthetic bars on a simulated clock, its feed, and the simulated broker."""
