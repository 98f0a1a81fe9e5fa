"""Crash-loop breaker: the cards whose calls were in progress when the kiosk itself died.

Before a minute's calls are dispatched the card ids are written durably to one ``system_config``
row, and cleared when the calls are answered. A row still there at start means the kiosk died
during those calls; each such card gets a strike, and a card that was in flight at
``STRIKES`` deaths in a row is faulted. One death is not enough: a power cut or an unrelated crash
during a 100-card minute must not fault every card, while a card that kills the kiosk at each
start is stopped after the second death instead of looping for ever. A card whose call completes
loses its strikes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from app.storage.system_store import SystemStore

KEY = "algorithm_calls_in_flight"
STRIKES = 2
REASON = "the kiosk stopped during this card's call {n} times in a row (crash-loop breaker)"


class CrashBreaker:
    """Reads and writes the in-flight record of one system.db (engine thread only)."""

    def __init__(self, system: SystemStore, strikes: int = STRIKES) -> None:
        self._system = system
        self._limit = strikes
        self._strikes: dict[int, int] = {}

    def _read(self) -> tuple[list[int], dict[int, int]]:
        raw = self._system.get_config(KEY)
        try:
            data = json.loads(raw) if raw else {}
            calls = [int(i) for i in data.get("calls", [])]
            strikes = {int(k): int(v) for k, v in data.get("strikes", {}).items()}
        except (ValueError, TypeError, AttributeError):
            return [], {}
        return calls, strikes

    def _write(self, calls: Sequence[int]) -> None:
        if not calls and not self._strikes:
            self._system.set_configs({KEY: None}, durable=True)
            return
        value = json.dumps({"calls": list(calls), "strikes": {str(k): v for k, v in self._strikes.items()}})
        self._system.set_configs({KEY: value}, durable=True)

    def at_start(self) -> dict[int, str]:
        """Cards to fault now (id -> reason): the engine died during their calls ``strikes`` times."""
        calls, strikes = self._read()
        for card in calls:
            strikes[card] = strikes.get(card, 0) + 1
        faulted = {card: REASON.format(n=n) for card, n in strikes.items() if n >= self._limit}
        self._strikes = {card: n for card, n in strikes.items() if n < self._limit}
        if calls or faulted:
            self._write(())
        return faulted

    @contextmanager
    def calls(self, cards: Sequence[int]) -> Iterator[None]:
        """Record ``cards`` as in flight for the block; on a normal end they are clear again."""
        self._write(cards)
        yield
        for card in cards:
            self._strikes.pop(card, None)
        self._write(())
