"""A backtest in its own worker process: the algorithm's file never runs in the kiosk, a cancel kills
the process, and one that ends its process or runs out of memory fails only its own job.

The process is forked from the same clean fork server as the cards' workers, limited in memory,
and may not write system.db (stocks.db stays writable: the job itself fetches or simulates the
bars it lacks). Progress comes back over the pipe.
"""

from __future__ import annotations

import json
import os
import threading
import types
from datetime import datetime
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Iterator, Sequence

from app.engine.backtest.replay import (
    BacktestCancelled, BacktestError, BacktestRequest, BacktestResult, BacktestRunError, prefetch_plan, run_backtest,
)
from app.engine.plugins import sandbox
from app.engine.plugins.pool import death_reason, worker_context
from app.engine.system.settings import Settings

POLL_S = 0.1  # how often a waiting job looks at its cancel flag


def _mappingproxy(items: dict) -> types.MappingProxyType:
    return types.MappingProxyType(items)


def _reduce_mappingproxy(proxy: types.MappingProxyType) -> tuple:
    return _mappingproxy, (dict(proxy),)


# Requests and results hold read-only mappings (parameters, sources), which pickle does not know.
ForkingPickler.register(types.MappingProxyType, _reduce_mappingproxy)


def run_isolated(request: BacktestRequest, progress: Callable[[float], None] | None,
                 cancel: threading.Event | None, *, settings: Settings, now: datetime | None,
                 memory_mb: int | None = None, fork_here: bool = False) -> BacktestResult:
    """``run_backtest`` in a worker process; same results and errors, plus ``BacktestRunError`` when
    the process dies or runs out of memory. ``cancel`` kills the process (``BacktestCancelled``).
    ``memory_mb`` defaults to twice a card worker's limit: a replay holds its whole range in memory.

    ``fork_here`` forks the worker from this process instead of the fork server, for a caller that
    is itself a clean single-threaded process (the ``autotrader backtest`` command): the worker then
    starts with this process's modules already imported, where the fork server is a new interpreter
    (about half a second of a one-shot command). The kiosk, with its threads and Qt, never does."""
    return _isolated(request, False, progress, cancel, settings, now, memory_mb, fork_here)


def run_isolated_json(request: BacktestRequest, progress: Callable[[float], None] | None,
                      cancel: threading.Event | None, *, settings: Settings, now: datetime | None,
                      memory_mb: int | None = None, fork_here: bool = False) -> str:
    """As :func:`run_isolated`, but the result comes back as its JSON text (``json.dumps`` of
    ``BacktestResult.to_json()``), written by the worker: for a caller that only prints it, a
    fraction of the time of sending the result and writing it here."""
    return _isolated(request, True, progress, cancel, settings, now, memory_mb, fork_here)


def _isolated(request: BacktestRequest, as_json: bool, progress: Callable[[float], None] | None,
              cancel: threading.Event | None, settings: Settings, now: datetime | None,
              memory_mb: int | None, fork_here: bool) -> Any:
    import multiprocessing

    from app.engine.system.data_folder import data_paths

    memory_mb = memory_mb or 2 * settings.worker_memory_mb

    context = multiprocessing.get_context("fork") if fork_here else worker_context()
    conn, child = context.Pipe(duplex=True)
    process = context.Process(target=_serve, args=(child,), name="backtest-worker", daemon=True)
    process.start()
    child.close()
    try:
        conn.send(((request, as_json), settings, now, memory_mb, str(data_paths(settings).system_db)))
        while True:
            if cancel is not None and cancel.is_set():
                raise BacktestCancelled("backtest cancelled")
            if not wait([conn, process.sentinel], POLL_S):
                continue
            try:
                message: Any = conn.recv()
            except (EOFError, OSError):
                process.join(1)
                raise BacktestRunError(f"the backtest stopped: {death_reason(process.exitcode)}") from None
            if message[0] == "progress":
                if progress is not None:
                    progress(message[1])
            elif message[0] == "result":
                return message[1]
            else:
                raise message[1]
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        conn.close()


def run_isolated_batch(requests: Sequence[BacktestRequest], *, settings: Settings, now: datetime | None,
                       cancel: threading.Event | None = None,
                       memory_mb: int | None = None) -> Iterator[tuple[int, BacktestResult | BacktestError]]:
    """Replay ``requests`` one after another in one worker process (one start for many short replays),
    yielding (index, result or error) as each ends. A replay that kills its process fails alone: the
    requests after it go on in a fresh process. ``cancel`` kills the process and ends the batch."""
    from app.engine.system.data_folder import data_paths

    memory_mb = memory_mb or 2 * settings.worker_memory_mb
    context = worker_context()
    todo = list(enumerate(requests))
    while todo:
        conn, child = context.Pipe(duplex=True)
        process = context.Process(target=_serve_batch, args=(child,), name="backtest-worker", daemon=True)
        process.start()
        child.close()
        try:
            conn.send(([r for _, r in todo], settings, now, memory_mb, str(data_paths(settings).system_db)))
            while todo:
                if cancel is not None and cancel.is_set():
                    return
                if not wait([conn, process.sentinel], POLL_S):
                    continue
                try:
                    message: Any = conn.recv()
                except (EOFError, OSError):
                    process.join(1)
                    index, _ = todo.pop(0)  # the one in progress took the process with it
                    yield index, BacktestRunError(f"the backtest stopped: {death_reason(process.exitcode)}")
                    break
                index, _ = todo.pop(0)
                yield index, message[1]
        finally:
            if process.is_alive():
                process.kill()
            process.join(5)
            conn.close()


def _confined(conn: Any, reader: bool = False) -> tuple:
    """The worker's set-up: read the job, then the limits (memory, parent's death, no system.db writes).

    ``reader``: the job is one (request, as JSON); a long one gets a reader of its bars
    (``prefetch.BarReader``, else None) as a fifth value, forked before the limits forbid it."""
    job, settings, now, memory_mb, system_db = conn.recv()
    # One OpenBLAS thread unless the person chose otherwise, for an algorithm that imports numpy:
    # starting a thread per core makes that import cost a one-shot backtest 0.1 s more.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    bars = None
    if reader:
        try:
            plan = prefetch_plan(job[0], settings, now)
            if plan is not None:
                from app.engine.backtest.prefetch import BarReader

                bars = BarReader(*plan)
        except Exception:  # noqa: BLE001 - only a way to read faster: the replay reads its bars alone
            bars = None
    sandbox.die_with_parent()
    sandbox.limit_memory_beyond_now(memory_mb * sandbox.MB)
    sandbox.WriteGuard([system_db], whole_folder=False).install()
    return (job, settings, now, memory_mb, bars) if reader else (job, settings, now, memory_mb)


def _outcome(request: BacktestRequest, progress: Callable[[float], None] | None, settings: Settings,
             now: datetime | None, memory_mb: int, reader: Any = None) -> BacktestResult | BacktestError:
    """One replay's result, or the error that ended it (whatever the algorithm raised ends only it)."""
    try:
        return run_backtest(request, progress, None, settings=settings, now=now, reader=reader)
    except MemoryError:
        return BacktestRunError(f"the backtest used more than {memory_mb} MB")
    except BacktestError as exc:
        return exc
    except BaseException as exc:  # noqa: BLE001 - a SystemExit in a plug-in ends this replay only
        return BacktestRunError(f"the backtest failed: {type(exc).__name__}: {exc}")


def _send(conn: Any, kind: str, outcome: BacktestResult | BacktestError | str, failed_kind: str) -> None:
    try:
        conn.send((kind, outcome))
    except Exception as exc:  # noqa: BLE001 - a result that cannot travel is this replay's failure
        conn.send((failed_kind, BacktestRunError(f"the backtest's result could not be sent back: {exc}")))


def _serve_batch(conn: Any) -> None:
    """The worker side of a batch: each request's result or error, in order."""
    requests, settings, now, memory_mb = _confined(conn)
    for request in requests:
        _send(conn, "done", _outcome(request, None, settings, now, memory_mb), "done")


def _serve(conn: Any) -> None:
    """The worker side of one job: progress messages, then its result or its error."""
    (request, as_json), settings, now, memory_mb, reader = _confined(conn, reader=True)
    last = [-1.0]

    def progress(fraction: float) -> None:
        if fraction - last[0] >= 0.005 or fraction >= 1.0:  # about 200 messages a job at most
            last[0] = fraction
            conn.send(("progress", fraction))

    try:
        outcome = _outcome(request, progress, settings, now, memory_mb, reader)
    finally:
        if reader is not None:
            reader.close()
    if isinstance(outcome, BaseException):
        _send(conn, "error", outcome, "error")
    else:
        _send(conn, "result", json.dumps(outcome.to_json()) if as_json else outcome, "error")
