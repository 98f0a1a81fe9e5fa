"""The trading engine: no widgets, no Qt GUI imports. Packages, from the top layer down:

- ``host/``        the engine thread and its signals, wiring, the orchestrator (wakes each
                   minute), the service calls the kiosk and CLI make, and the UI's client.
- ``backtest/``    replaying an algorithm file over stored bars; backtest jobs.
- ``minute/``      a trading minute: scheduling policy, trading cycle (where a minute's decision
                   is made and its orders are sent), risk guard, order journal (where a fill is
                   recorded).
- ``plugins/``     algorithm files: loader (catalogue) and the guarded runner.
- ``alpaca/``      every use of alpaca-py: clients, Alpaca broker, history, bar stream, feed.
- ``sim/``         the simulated market, its feed and its broker.
- ``algorithm_api`` the public API that algorithm files import (``AlgorithmBase``).
- ``portfolio/``   money rules, the card ledger, card snapshots.
- ``brokers/``     the Broker protocol, order state, broker errors.
- ``system/``      settings, data folder, PIN, logging, hardening, maintenance.
- ``marketdata/``  calendar, minute arithmetic, clock, feed protocol, bar CSV.
- ``events``       the frozen dataclasses that signals carry (CardSnapshot, Notice, …).

A package imports only from packages below it (an import-linter ``layers`` contract in
pyproject.toml keeps it so); ``app.storage`` is below all of them.
"""
