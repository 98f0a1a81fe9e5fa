"""Call algorithms safely: every call runs in a worker thread under a time budget and its
return value is checked, so one broken or stuck algorithm faults its own card only.

Worker threads are daemons owned by this module rather than a ``ThreadPoolExecutor``:
the executor's threads are joined at interpreter exit, so one algorithm stuck in a loop
would stop the kiosk from ever restarting. A worker caught overrunning is detached
(left to finish or hang on its own) and replaced, so later calls always find free workers.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from numbers import Integral
from queue import SimpleQueue
from typing import Any, Mapping, Protocol, Sequence

from app.engine.algorithm_api import AlgorithmBase

MAX_SHARES = 1_000_000
_ACTIONS = frozenset(("buy", "sell", "hold"))
_MAX_DETACHED = 64  # threads left behind by stuck algorithms before we stop replacing them


@dataclass(frozen=True, slots=True)
class Decision:
    """A validated algorithm decision: ``('buy'|'sell', shares >= 1)`` or ``('hold', 0)``."""

    action: str
    shares: int


HOLD = Decision("hold", 0)


class AlgorithmFault(Exception):
    """An algorithm call that failed: raised, returned garbage or overran its budget.

    ``reason`` is a human sentence for the card; ``kind`` is one of ``exception``,
    ``bad_return``, ``timeout``, ``busy``, ``not_started``.
    """

    def __init__(self, reason: str, kind: str = "exception") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AlgorithmFault) and (self.reason, self.kind) == (other.reason, other.kind)

    def __hash__(self) -> int:
        return hash((self.reason, self.kind))


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def validate_decision(value: Any) -> Decision:
    """Check what ``run`` returned; ``AlgorithmFault(kind='bad_return')`` says what is wrong."""
    if value.__class__ is tuple and len(value) == 2:
        action, shares = value
        # The usual order, checked without the ABC look-ups below (a replay checks thousands).
        if shares.__class__ is int and (action == "buy" or action == "sell") and 1 <= shares <= MAX_SHARES \
                and isinstance(action, str):
            return Decision(action, shares)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise AlgorithmFault(f"returned {_short(value)}: expected (action, shares)", "bad_return")
    action, shares = value
    if not isinstance(action, str) or action not in _ACTIONS:
        raise AlgorithmFault(f"returned {_short(tuple(value))}: action must be 'buy', 'sell' or 'hold'",
                             "bad_return")
    if action == "hold":
        return HOLD
    if isinstance(shares, bool) or not isinstance(shares, Integral):
        raise AlgorithmFault(f"returned {_short(tuple(value))}: shares must be a whole number", "bad_return")
    count = int(shares)
    if count < 1:
        raise AlgorithmFault(f"returned {_short(tuple(value))}: shares must be at least 1", "bad_return")
    if count > MAX_SHARES:
        raise AlgorithmFault(f"returned {_short(tuple(value))}: absurd share count (limit {MAX_SHARES:,})",
                             "bad_return")
    return Decision(action, count)


def _algorithm_file(algo: Any) -> str | None:
    try:
        return os.path.abspath(inspect.getfile(type(algo)))
    except (TypeError, OSError):
        return None


def describe_exception(exc: BaseException, algo: Any) -> str:
    """``"ZeroDivisionError: division by zero (sma_crossover.py line 42)"``: the innermost
    frame in the algorithm's own file, else the innermost frame overall."""
    frames = traceback.extract_tb(exc.__traceback__)
    source = _algorithm_file(algo)
    where = None
    for frame in frames:
        if source is not None and os.path.abspath(frame.filename) == source:
            where = frame
    if where is None and frames:
        where = frames[-1]
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if where is not None:
        text += f" ({os.path.basename(where.filename)} line {where.lineno})"
    return text


class AlgorithmRunner(Protocol):
    """What the minute cycle needs of a runner: ``GuardedRunner`` (threads in this process) or
    ``WorkerPool`` (worker processes). ``load`` returns the handle ``run_many`` takes."""

    time_budget_s: float

    @property
    def worker_count(self) -> int: ...

    def load(self, key: int, algorithm_type: str, ticker: str, capital: Any, params: Mapping[str, Any],
             dirs: Sequence[Any] | None, context: Any = None) -> Any: ...

    def check(self, algorithm_type: str, ticker: str, capital: Any, params: Mapping[str, Any],
              dirs: Sequence[Any] | None) -> dict[str, Any]: ...

    def discard(self, key: int) -> None: ...

    def warm(self) -> None: ...

    def prepare(self, handles: Sequence[Any]) -> dict[int, AlgorithmFault]: ...

    def run_many(self, items: Sequence[tuple[Any, datetime, int]]) -> list[Decision | AlgorithmFault]: ...

    def close(self) -> None: ...


class _Slot:
    """One call within a batch; fields are guarded by the batch lock."""

    __slots__ = ("algo", "current_time", "algo_id", "result", "started", "worker")

    def __init__(self, algo: AlgorithmBase, current_time: datetime, algo_id: int) -> None:
        self.algo = algo
        self.current_time = current_time
        self.algo_id = algo_id
        self.result: Decision | AlgorithmFault | None = None
        self.started = 0.0  # monotonic start time, 0 while queued
        self.worker: _Worker | None = None


class _Batch:
    __slots__ = ("slots", "remaining", "expired", "lock", "done")

    def __init__(self, slots: list[_Slot]) -> None:
        self.slots = slots
        self.remaining = len(slots)
        self.expired = False
        self.lock = threading.Lock()
        self.done = threading.Event()


class _Worker:
    __slots__ = ("detached",)

    def __init__(self) -> None:
        self.detached = False


class GuardedRunner:
    """Runs algorithms in daemon worker threads within a time budget and validates their decisions.

    ``run`` handles one call, ``run_many`` a minute's worth of cards sharing one budget window.
    Thread-safe; normally owned by the engine thread.
    """

    def __init__(self, time_budget_s: float = 5.0, workers: int = 8) -> None:
        if not time_budget_s > 0:
            raise ValueError(f"time budget must be positive, got {time_budget_s!r}")
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers!r}")
        self.time_budget_s = float(time_budget_s)
        self._target = workers
        self._queue: SimpleQueue[tuple[_Batch, _Slot] | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._serving = 0  # live workers that are not detached
        self._detached = 0
        self._running: set[int] = set()  # id() of algorithms currently inside run()
        self._closed = False
        # A worker running one call longer than this is presumed slow and gets replaced.
        self._slow_after = min(0.05, self.time_budget_s / 4)

    # --- public ----------------------------------------------------------------------

    @property
    def worker_count(self) -> int:
        """How many workers the runner keeps serving (replaced ones not counted)."""
        return self._target

    def load(self, key: int, algorithm_type: str, ticker: str, capital: Any, params: Mapping[str, Any],
             dirs: Sequence[Any] | None, context: Any = None) -> AlgorithmBase:
        """Build card ``key``'s algorithm in this process, bound to ``context``; raises the loader's
        ``AlgorithmLoadError`` or ``AlgorithmParamError`` (the same call on ``WorkerPool`` returns
        a handle and reports those as faults)."""
        from app.engine.plugins.loader import create_algorithm  # the loader is a sibling, not a base

        return create_algorithm(algorithm_type, ticker, capital, params, dirs, context=context)

    def check(self, algorithm_type: str, ticker: str, capital: Any, params: Mapping[str, Any],
              dirs: Sequence[Any] | None) -> dict[str, Any]:
        """Build the algorithm once and return its resolved parameters (errors as in ``load``)."""
        return dict(self.load(0, algorithm_type, ticker, capital, params, dirs).params)

    def warm(self) -> None:
        """Nothing to do: worker threads start on demand."""

    def prepare(self, handles: Sequence[Any]) -> dict[int, AlgorithmFault]:
        """Nothing to do: ``load`` already built the objects here."""
        return {}

    def discard(self, key: int) -> None:
        """Nothing to do: the objects are the caller's (``WorkerPool`` drops its copy)."""

    def run(self, algo: AlgorithmBase, current_time: datetime, algo_id: int) -> Decision:
        """One call of ``algo.run(current_time, algo_id)``; raises ``AlgorithmFault`` on any failure."""
        result = self.run_many([(algo, current_time, algo_id)])[0]
        if isinstance(result, AlgorithmFault):
            raise result
        return result

    def run_many(self, items: Sequence[tuple[AlgorithmBase, datetime, int]]) -> list[Decision | AlgorithmFault]:
        """Run several calls concurrently inside ONE budget window; results in input order.

        A call still running when the window closes yields a timeout fault and its worker is
        replaced; calls not yet started by then are not started at all.
        """
        if self._closed:
            raise RuntimeError("GuardedRunner is closed")
        if not items:
            return []
        slots = [_Slot(algo, when, algo_id) for algo, when, algo_id in items]
        batch = _Batch(slots)
        deadline = time.monotonic() + self.time_budget_s
        self._ensure_workers()
        put = self._queue.put
        for slot in slots:
            put((batch, slot))
        self._await(batch, deadline)
        return [self._outcome(slot) for slot in slots]

    def __enter__(self) -> GuardedRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop idle workers. Calls still running are abandoned (their threads are daemons)."""
        with self._lock:
            self._closed = True
            count, self._serving = self._serving, 0
        for _ in range(count):
            self._queue.put(None)

    # --- internals -------------------------------------------------------------------

    def _await(self, batch: _Batch, deadline: float) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if batch.done.wait(min(left, self._slow_after)):
                return
            self._replace_slow_workers(batch)
        with batch.lock:
            batch.expired = True
            stuck = [s for s in batch.slots if s.result is None and s.worker is not None]
        for slot in stuck:
            self._detach(slot.worker)  # type: ignore[arg-type]

    def _replace_slow_workers(self, batch: _Batch) -> None:
        now = time.monotonic()
        with batch.lock:
            slow = [s.worker for s in batch.slots
                    if s.result is None and s.worker is not None and now - s.started >= self._slow_after]
        for worker in slow:
            self._detach(worker)

    def _detach(self, worker: _Worker) -> None:
        with self._lock:
            if worker.detached:
                return
            worker.detached = True
            self._serving -= 1
            self._detached += 1
        self._ensure_workers()

    def _ensure_workers(self) -> None:
        with self._lock:
            if self._closed:
                return
            # Past the cap of abandoned threads keep a single worker rather than leak more.
            floor = 1 if self._detached >= _MAX_DETACHED else self._target
            missing = max(floor - self._serving, 0)
            self._serving += missing
        for _ in range(missing):
            worker = _Worker()
            threading.Thread(target=self._work, args=(worker,), name="algorithm-worker", daemon=True).start()

    def _work(self, worker: _Worker) -> None:
        get = self._queue.get
        running = self._running
        while True:
            item = get()
            if item is None:
                return
            batch, slot = item
            algo = slot.algo
            key = id(algo)
            with batch.lock:
                if batch.expired:
                    continue  # its window closed before a worker was free: never start it late
                slot.started = time.monotonic()
                slot.worker = worker
            with self._lock:
                busy = key in running
                if not busy:
                    running.add(key)
            if busy:
                result: Decision | AlgorithmFault = AlgorithmFault(
                    "still running its previous call", "busy")
            else:
                try:
                    result = validate_decision(algo.run(slot.current_time, slot.algo_id))
                except AlgorithmFault as fault:
                    result = fault
                except BaseException as exc:  # noqa: BLE001 - a SystemExit in a plug-in must not kill the worker
                    result = AlgorithmFault(describe_exception(exc, algo), "exception")
                finally:
                    with self._lock:
                        running.discard(key)
            with batch.lock:
                slot.result = result
                batch.remaining -= 1
                if batch.remaining == 0:
                    batch.done.set()
            if worker.detached:
                with self._lock:
                    self._detached -= 1
                return

    def _outcome(self, slot: _Slot) -> Decision | AlgorithmFault:
        result = slot.result
        if result is not None:
            return result
        if slot.worker is None:
            return AlgorithmFault(
                f"not started within {self.time_budget_s} s: every worker was busy", "not_started")
        return AlgorithmFault(f"took longer than {self.time_budget_s} s", "timeout")
