"""An Alpaca paper engine on an accelerated SimClock against the fake Alpaca server, for fault tests.

Real alpaca-py clients (REST and websocket) talk to :class:`~tests.fakes.alpaca_server.FakeAlpaca`
over 127.0.0.1; the engine runs on its own QThread exactly as the kiosk starts it (EngineHost),
the live bar stream is the app's BarStream on the main thread, and the test drives the market:
:class:`MinuteBars` pushes each minute's bar when the simulated clock completes it.
:class:`SignalLog` keeps every signal the engine and the stream emitted, with both clocks' times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Slot

from app.engine.marketdata.clock import SimClock
from app.engine.host.wiring import EngineOptions, EngineParts
from app.engine.system.settings import Settings
from tests.fakes.alpaca_server import FakeAlpaca

def paper_settings(fake: FakeAlpaca, data_root: Path, algorithm_dirs: tuple[Path, ...]) -> Settings:
    """Paper-mode settings whose every Alpaca URL is the fake."""
    return Settings(api_key=fake.key, secret=fake.secret, paper=True, data_root=data_root,
                    trading_url=fake.origin, data_url=fake.origin, stream_url=fake.stream_url,
                    algorithm_dirs=algorithm_dirs)


def fast_parts_factory(settings: Settings, clock: SimClock, options: EngineOptions, *,
                       timeout_s: float, retry_wait_s: float) -> Callable[[], EngineParts]:
    """EngineParts.build with an AlpacaBroker whose HTTP timeout and retry wait suit accelerated time."""

    def build() -> EngineParts:
        from app.engine.alpaca.broker import AlpacaBroker

        broker = AlpacaBroker.from_settings(settings, timeout_s=timeout_s, retry_wait_s=retry_wait_s)
        return EngineParts.build(settings, clock=clock, options=options, broker=broker)

    return build


@dataclass(frozen=True)
class Logged:
    """One signal as it was seen: real seconds since the log began, simulated time, kind, payload."""

    real_s: float
    sim: datetime
    kind: str
    value: Any


class SignalLog(QObject):
    """Everything the engine and the stream signalled, in the order the main (UI) thread saw it.

    A QObject made on the main thread: signals from the engine thread reach it queued, exactly as
    they reach the kiosk window, so its times are comparable with what the header showed.
    """

    # One named @Slot per signal, spelled out: a slot made by a factory function is looked up by its
    # __name__, and unless that is a slot of this class PySide6 connects directly, so engine-thread
    # emissions would run on the engine thread instead of being queued to this one.

    def __init__(self, clock: SimClock) -> None:
        super().__init__()
        self.clock = clock
        self.entries: list[Logged] = []
        self._t0 = time.monotonic()

    def add(self, kind: str, value: Any) -> None:
        """Record one emission now."""
        self.entries.append(Logged(time.monotonic() - self._t0, self.clock.now(), kind, value))

    @Slot(object)
    def _on_stream(self, value: Any) -> None:
        self.add("stream_changed", value)

    @Slot(object)
    def _on_notice(self, value: Any) -> None:
        self.add("notice", value)

    @Slot(object)
    def _on_account(self, value: Any) -> None:
        self.add("account_changed", value)

    @Slot(object)
    def _on_cycle(self, value: Any) -> None:
        self.add("cycle_done", value)

    @Slot(object)
    def _on_cards(self, value: Any) -> None:
        self.add("cards_changed", value)

    def attach(self, signals: Any) -> None:
        """Record stream_changed, notice, account_changed, cycle_done and cards_changed of ``signals``."""
        signals.stream_changed.connect(self._on_stream)
        signals.notice.connect(self._on_notice)
        signals.account_changed.connect(self._on_account)
        signals.cycle_done.connect(self._on_cycle)
        signals.cards_changed.connect(self._on_cards)

    def of(self, kind: str) -> list[Logged]:
        """Entries of one kind, oldest first."""
        return [e for e in self.entries if e.kind == kind]


class MinuteBars:
    """One deterministic minute bar per symbol per completed minute, pushed to the fake's stream.

    ``push_through(now)`` sends every bar whose minute has completed by ``now`` (and no later than
    the session's last minute). push_bar also stores the bar for the fake's REST API, as Alpaca
    does, so a bar the stream misses can always be backfilled. The fake fills market orders at the
    latest close.
    """

    def __init__(self, fake: FakeAlpaca, symbols: tuple[str, ...], open_ts: int, close_ts: int) -> None:
        self.fake = fake
        self.symbols = symbols
        self.open_ts = open_ts
        self.close_ts = close_ts
        self.next_ts = open_ts  # minute of the next bar to push

    def bar(self, symbol: str, ts: int) -> tuple:
        """The bar of ``symbol`` at minute ``ts``: (ts, o, h, l, c, v)."""
        i = (ts - self.open_ts) // 60
        base = 100 + 20 * self.symbols.index(symbol)
        close = round(base + ((i * 7) % 11 - 5) * 0.05, 2)
        open_ = round(close - 0.02, 2)
        return (ts, open_, round(close + 0.05, 2), round(close - 0.07, 2), close, 1000 + i)

    def push_through(self, now: datetime) -> int:
        """Push every completed minute up to ``now``; returns how many minutes were pushed."""
        done = 0
        limit = min(int(now.timestamp()), self.close_ts)
        while self.next_ts + 60 <= limit:
            ts = self.next_ts
            for symbol in self.symbols:
                bar = self.bar(symbol, ts)
                self.fake.set_price(symbol, Decimal(str(bar[4])))
                self.fake.push_bar(symbol, bar)
            self.next_ts += 60
            done += 1
        return done

    @property
    def finished(self) -> bool:
        """True once the session's last bar was pushed."""
        return self.next_ts >= self.close_ts


def utc_ts(moment: datetime) -> int:
    """Epoch seconds of an aware datetime."""
    return int(moment.astimezone(timezone.utc).timestamp())
