"""Time and bars: the exchange calendar, minute arithmetic, the clock, the feed protocol and the bar CSV format."""
