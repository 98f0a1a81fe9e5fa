"""Backtests off the engine thread: each job replays on its own daemon worker thread.

The engine thread must wake on time every market minute and the UI thread must stay responsive, so
neither runs a replay. ``BacktestJobs.start`` returns at once with a thread-safe future; the caller
awaits it (``asyncio.wrap_future`` on the UI loop) and may cancel the job from any thread.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from app.engine.backtest.replay import BacktestCancelled, BacktestError, BacktestRequest, BacktestResult, run_backtest
from app.engine.system.settings import Settings

log = logging.getLogger("autotrader.engine.backtest")

ProgressCallback = Callable[[float], None]

__all__ = ["BacktestHandle", "BacktestJobs", "ProgressCallback", "cyclic_gc_paused"]

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the block runs (nesting and threads counted).

    A replay allocates a tuple per bar (about 100,000 for a year) that reference counting frees.
    With the collector on, that churn triggers full collections of the whole kiosk heap, which stop
    every thread, the UI's included, for 60 ms here and several times that on a Pi. Cycles made in
    the meantime are collected once the last job ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


@dataclass(frozen=True)
class BacktestHandle:
    """A started backtest: its id, the request it replays, and a future of its ``BacktestResult``.

    The future fails with ``BacktestError`` (bad input, no data), ``BacktestRunError`` (the algorithm
    failed) or ``BacktestCancelled``. Both the future and ``cancel`` are safe from any thread.
    """

    job_id: int
    request: BacktestRequest
    future: Future = field(repr=False, compare=False)
    _cancel_event: threading.Event = field(repr=False, compare=False)

    def cancel(self) -> None:
        """Ask the job to stop; it does within about one session's replay and its future then fails
        with ``BacktestCancelled`` (a job already finished keeps its result)."""
        self._cancel_event.set()

    @property
    def cancelled(self) -> bool:
        """True once ``cancel`` was called."""
        return self._cancel_event.is_set()


class BacktestJobs:
    """Runs ``run_backtest`` jobs, one daemon thread each, over one mode's ``settings``."""

    def __init__(self, settings: Settings, *, isolated: bool = True) -> None:
        self._settings = settings
        self._isolated = isolated  # each job in its own worker process (a cancel kills it)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._running: dict[int, threading.Event] = {}

    def start(self, request: BacktestRequest, on_progress: ProgressCallback | None = None, *,
              now: datetime | None = None) -> tuple[int, Future]:
        """Start replaying ``request`` (sessions closed by ``now``) and return ``(job_id, future)`` at once.

        ``on_progress(fraction)`` is called on the worker thread: a UI must hop to its own loop
        (``loop.call_soon_threadsafe``). An exception it raises is logged and ignored, so a closed
        UI loop never fails the job.
        """
        return self._start(request, on_progress, now)[:2]

    def start_handle(self, request: BacktestRequest, on_progress: ProgressCallback | None = None, *,
                     now: datetime | None = None) -> BacktestHandle:
        """Like ``start``, returning a :class:`BacktestHandle`."""
        job_id, future, event = self._start(request, on_progress, now)
        return BacktestHandle(job_id, request, future, event)

    def cancel(self, job_id: int) -> bool:
        """Ask job ``job_id`` to stop; False when no such job is running."""
        with self._lock:
            event = self._running.get(job_id)
        if event is None:
            return False
        event.set()
        return True

    def cancel_all(self) -> None:
        """Ask every running job to stop (engine shutting down)."""
        with self._lock:
            events = list(self._running.values())
        for event in events:
            event.set()

    @property
    def running(self) -> int:
        """How many jobs have not finished yet."""
        with self._lock:
            return len(self._running)

    def _start(self, request: BacktestRequest, on_progress: ProgressCallback | None,
               now: datetime | None) -> tuple[int, Future, threading.Event]:
        job_id = next(self._ids)
        future: Future = Future()
        future.set_running_or_notify_cancel()  # it starts now: Future.cancel() cannot drop it silently
        event = threading.Event()
        with self._lock:
            self._running[job_id] = event
        worker = threading.Thread(target=self._work, args=(job_id, request, on_progress, now, future, event),
                                  name=f"backtest-{job_id}", daemon=True)
        worker.start()
        return job_id, future, event

    def _run(self, request: BacktestRequest, progress: Callable[[float], None], event: threading.Event,
             now: datetime | None) -> BacktestResult:
        if not self._isolated:
            return run_backtest(request, progress, event, settings=self._settings, now=now)
        from app.engine.backtest.isolated import run_isolated

        return run_isolated(request, progress, event, settings=self._settings, now=now)

    def _work(self, job_id: int, request: BacktestRequest, on_progress: ProgressCallback | None,
              now: datetime | None, future: Future, event: threading.Event) -> None:
        def progress(fraction: float) -> None:
            if on_progress is None:
                return
            try:
                on_progress(fraction)
            except Exception:  # noqa: BLE001 - a dead listener must not stop the replay
                log.debug("backtest %d: progress listener failed", job_id, exc_info=True)

        # The collector is paused only for a replay in this process: an isolated job's replay runs
        # in its worker, and pausing the kiosk's collector for it would only pile up a bigger
        # collection for later (a stall on the UI thread when it comes).
        paused = nullcontext() if self._isolated else cyclic_gc_paused()
        try:
            with paused:
                result: BacktestResult = self._run(request, progress, event, now)
        except (BacktestCancelled, BacktestError) as exc:  # expected outcomes, told to the person
            future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: logged, and still reaches whoever awaits
            log.exception("backtest %d (%s on %s) failed", job_id, request.algorithm_type, request.symbol)
            future.set_exception(exc)
        else:
            future.set_result(result)
        finally:
            with self._lock:
                self._running.pop(job_id, None)
