"""Starting and stopping the engine thread from the UI (main) thread."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QMetaObject, Qt, QThread

from app.engine.marketdata.clock import Clock, RealClock, SimClock
from app.engine.host.client import CallBridge, EngineClient
from app.engine.host.wiring import EngineOptions, EngineParts
from app.engine.host.service import EngineService
from app.engine.host.orchestrator import Orchestrator
from app.engine.host.signals import EngineSignals
from app.engine.system.settings import Settings

log = logging.getLogger("autotrader.engine.host")


class EngineStartError(RuntimeError):
    """The engine could not start (database, broker, data folder); the text says why."""


class EngineHost:
    """Owns the engine QThread, its Orchestrator and the call bridge; gives the UI a client."""

    def __init__(self, settings: Settings, clock: Clock | None = None, *,
                 options: EngineOptions | None = None, skip_closed_hours: bool | None = None,
                 parts_factory: Callable[[], EngineParts] | None = None):
        # parts_factory (tests, benchmarks): builds the engine parts on the engine thread instead of
        # EngineParts.build, e.g. to hand in an AlpacaBroker with short timeouts.
        self.settings = settings
        self.clock = clock or RealClock()
        self.signals = EngineSignals()
        self.thread = QThread()
        self.thread.setObjectName("engine")
        self.orchestrator = Orchestrator(settings, self.clock, self.signals, options=options,
                                         skip_closed_hours=skip_closed_hours, parts_factory=parts_factory)
        self.bridge = CallBridge()
        self.orchestrator.moveToThread(self.thread)
        self.bridge.moveToThread(self.thread)
        self.signals.moveToThread(self.thread)
        self.client = EngineClient(self.bridge)
        self._running = False

    @classmethod
    def for_tests(cls, data_root: Path, *, speed: float = 60.0, start=None, algorithm_dirs=(),
                  **options) -> "EngineHost":
        """A started sim-mode engine over ``data_root`` on an accelerated simulated clock."""
        from datetime import datetime, timezone
        settings = Settings(data_root=Path(data_root), sim_forced=True, algorithm_dirs=tuple(algorithm_dirs))
        start = start or datetime(2024, 6, 3, 13, 30, tzinfo=timezone.utc)
        host = cls(settings, SimClock(start, speed=speed), options=EngineOptions(**options))
        host.start()
        return host

    @property
    def service(self) -> EngineService:
        """The engine service (call its methods only through ``client.call``)."""
        service = self.orchestrator.service
        if service is None:
            raise RuntimeError("the engine has not started")
        return service

    @property
    def mode(self) -> str:
        """'sim', 'paper' or 'live'."""
        return self.settings.mode

    def start(self, timeout_s: float | None = None) -> None:
        """Start the thread and wait until the engine has opened its stores and reconciled orders
        (at most ``timeout_s``, default the setting AUTOTRADER_START_TIMEOUT_S)."""
        timeout_s = float(self.settings.start_timeout_s) if timeout_s is None else timeout_s
        self.thread.start()
        QMetaObject.invokeMethod(self.orchestrator, "start", Qt.ConnectionType.QueuedConnection)
        if not self.orchestrator.started.wait(timeout_s):
            raise EngineStartError(f"the engine did not start within {timeout_s:.0f} s "
                                   "(AUTOTRADER_START_TIMEOUT_S)")
        if self.orchestrator.start_error is not None:
            exc = self.orchestrator.start_error
            self.stop()
            raise EngineStartError(f"the engine could not start: {exc}") from exc
        self._running = True

    def stop(self) -> None:
        """Stop the orchestrator on its thread, then end the thread."""
        if self.thread.isRunning():
            QMetaObject.invokeMethod(self.orchestrator, "stop", Qt.ConnectionType.BlockingQueuedConnection)
            self.thread.quit()
            self.thread.wait(10_000)
        self._running = False
