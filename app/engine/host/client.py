"""Calling the engine thread from the UI loop: each call runs on the engine thread and resolves as an
awaitable on the caller's asyncio (qasync) loop, so the UI never blocks on SQL or the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

log = logging.getLogger("autotrader.engine.client")


class ServiceError(Exception):
    """A request the engine refused; ``str()`` says what to fix, in words for the person at the wall."""


class _Call:
    __slots__ = ("fn", "args", "kwargs", "loop", "future")

    def __init__(self, fn, args, kwargs, loop, future):
        self.fn, self.args, self.kwargs, self.loop, self.future = fn, args, kwargs, loop, future


class CallBridge(QObject):
    """Lives on the engine thread; runs queued calls there and hands results back thread-safely."""

    submitted = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        # The connection is made while both objects live on the creating thread; Qt re-evaluates
        # the connection type per emit, so after moveToThread this is a queued connection.
        self.submitted.connect(self._run)

    @Slot(object)
    def _run(self, call: _Call) -> None:
        if call.future.cancelled():
            return
        try:
            result = call.fn(*call.args, **call.kwargs)
        except ServiceError as exc:
            self._resolve(call, exc, failed=True)
        except Exception as exc:  # noqa: BLE001 - the UI shows it instead of crashing
            log.exception("engine call %s failed", getattr(call.fn, "__name__", call.fn))
            self._resolve(call, ServiceError(f"internal error: {type(exc).__name__}: {exc}"), failed=True)
        else:
            self._resolve(call, result, failed=False)

    @staticmethod
    def _resolve(call: _Call, value: Any, failed: bool) -> None:
        def settle() -> None:
            if call.future.done():
                return
            if failed:
                call.future.set_exception(value)
            else:
                call.future.set_result(value)
        try:
            call.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the UI loop is closed (shutting down)
            pass


class EngineClient:
    """The UI's handle on the engine: ``await client.call(service.method, *args)``."""

    def __init__(self, bridge: CallBridge):
        self._bridge = bridge

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future:
        """Run ``fn(*args, **kwargs)`` on the engine thread; returns a future on the running loop."""
        loop = asyncio.get_event_loop()
        future = loop.create_future()
        self._bridge.submitted.emit(_Call(fn, args, kwargs, loop, future))
        return future
