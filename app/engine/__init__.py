"""Trading engine: calendar, clock, money, brokers, market data, algorithms, orchestration. No widgets."""
