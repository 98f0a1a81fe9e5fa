"""Running user actions as asyncio tasks on the qasync loop, with every failure turned into a message.

A touch handler must never block and never raise: it starts a task here and returns. Whatever the
task raises (a ServiceError from the engine, or a bug) reaches ``on_error`` as a sentence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from app.engine.host.client import ServiceError

log = logging.getLogger("autotrader.ui")


def error_text(exc: BaseException) -> str:
    """What to tell the person at the wall about ``exc``: its own words for a ServiceError."""
    if isinstance(exc, ServiceError):
        return str(exc) or "The engine refused the request."
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Unexpected error: {type(exc).__name__}" + (f": {detail}" if detail else "")


class TaskRunner:
    """Starts coroutines as tasks, keeps them referenced until done, reports their failures."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._on_error = on_error
        self._tasks: set[asyncio.Task] = set()

    def start(self, coro: Coroutine[Any, Any, Any], *, name: str = "ui-action") -> asyncio.Task | None:
        """Schedule ``coro``; returns its task, or None (and reports) when no asyncio loop is set."""
        try:
            task = asyncio.ensure_future(coro)
        except RuntimeError as exc:  # no event loop: a bare widget test or a shutting-down app
            coro.close()
            self._on_error(f"Cannot run {name}: {exc}")
            return None
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    @property
    def pending(self) -> int:
        """Tasks still running (tests wait for this to reach 0)."""
        return len(self._tasks)

    def cancel_all(self) -> None:
        """Cancel every running task (window closing)."""
        for task in list(self._tasks):
            task.cancel()

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if not isinstance(exc, ServiceError):
            log.error("UI action failed", exc_info=exc)
        try:
            self._on_error(error_text(exc))
        except Exception:  # noqa: BLE001 - reporting must never take the UI down
            log.exception("could not show an error")
