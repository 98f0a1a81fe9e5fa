"""The worker process: imports algorithm files, builds the cards' ``Algorithm`` objects and runs them.

It answers one request at a time over a pipe, so the parent always knows which card's call is in
progress. Requests (tuples): ``("run", key, spec | None, epoch_seconds, algo_id)`` — ``spec`` is
sent when this worker does not hold the card's object yet; ``("runs", [(key, spec | None,
epoch_seconds, algo_id), ...])`` several of those, answered one by one; ``("build", key, spec)``
builds ahead of the first call; ``("drop", key)``; ``("check", spec)``; ``("catalogue", stem, path)``.
Replies: ``("ok", action, shares, recycle)``, ``("fault", reason, kind, recycle)``,
``("params", resolved, recycle)``, ``("info", fields, error, recycle)``. ``recycle`` asks the
parent to replace this process (after a MemoryError, a refused write or threads left running:
its state is suspect).

Everything here runs in the worker only; the pool (``pool.py``) is the parent side.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from app.engine.algorithm_api import AlgorithmBase, AlgorithmParamError
from app.engine.plugins import sandbox
from app.engine.plugins.loader import AlgorithmLoadError, create_algorithm, load_file_info
from app.engine.plugins.runner import AlgorithmFault, describe_exception, validate_decision
from app.engine.marketdata.minute_reads import MinuteBars
from app.engine.portfolio.ledger import CardLedger, Holding
from app.storage.market_store import MarketStore
from app.storage.records import Bar
from app.storage.system_store import SystemStore

THREAD_GRACE_S = 0.05  # how long threads an algorithm started may take to end after its call


@dataclass(frozen=True)
class CardSpec:
    """What a worker needs to build a card's algorithm: sent once per worker that runs the card."""

    key: int
    algorithm_type: str
    ticker: str
    capital: str
    params_json: str
    dirs: tuple[str, ...] | None


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker sets itself up: the databases it may read and its memory limit."""

    market_path: str | None
    system_path: str | None
    memory_bytes: int | None


class ReadOnlyContext:
    """The algorithm data context of a worker: stocks.db and system.db through ``mode=ro`` connections.

    Connections open on first use (a catalogue worker never needs them) and are shared by the threads
    of the process, so an algorithm's own thread reads through the same read-only connection. Within
    one minute (``begin_minute``) the cards on a ticker share one read of its bars and the ledger
    looks at system.db once: nothing is recorded while a minute's calls run.
    """

    def __init__(self, market_path: str | None, system_path: str | None) -> None:
        self._market_path = market_path
        self._system_path = system_path
        self._market: MarketStore | None = None
        self._system: SystemStore | None = None
        self._ledger = CardLedger()
        self._ledger.read_with(self._system_store)  # fills are paged in read-only too
        self._lock = threading.Lock()
        self.bars = MinuteBars(lambda symbol, n, before: self._stores()[0].last_bars(symbol, n, before))
        self._minute: int | None = None
        self._ledger_minute: int | None = None

    @contextmanager
    def _system_store(self) -> Iterator[SystemStore]:
        yield self._stores()[1]

    def _stores(self) -> tuple[MarketStore, SystemStore]:
        with self._lock:
            if self._market is None or self._system is None:
                if self._market_path is None or self._system_path is None:
                    raise RuntimeError("this worker has no data to read")
                self._market = MarketStore(self._market_path, readonly=True, shared=True)
                self._system = SystemStore(self._system_path, readonly=True, shared=True)
            return self._market, self._system

    def begin_minute(self, minute_ts: int) -> None:
        """The calls that follow are for the minute ``minute_ts`` (epoch s)."""
        self._minute = minute_ts
        self.bars.begin_minute(minute_ts)

    def last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        """Last ``n`` stored bars strictly before ``before_ts``."""
        return self.bars.last_bars(symbol, n, before_ts)

    def bars_between(self, symbol: str, start_ts: int, end_ts: int) -> list[Bar]:
        """Stored bars in the closed range."""
        return self._stores()[0].bars_between(symbol, start_ts, end_ts)

    def transactions(self, algo_id: int) -> Sequence[Any]:
        """This card's transactions, oldest first."""
        return self.holding(algo_id).transactions

    def holding(self, algo_id: int) -> Holding:
        """This card's fills and totals: the ledger looks at system.db once a minute."""
        minute = self._minute
        if minute is None or minute != self._ledger_minute or not self._ledger.started:
            self._ledger.refresh(self._stores()[1])
            self._ledger_minute = minute
        return self._ledger.held((algo_id,))[algo_id]


class Worker:
    """The state of one worker process: its cards' algorithm objects and its guard."""

    def __init__(self, config: WorkerConfig) -> None:
        protected = [Path(p) for p in (config.market_path, config.system_path) if p]
        self.guard = sandbox.WriteGuard(protected)
        self.context = ReadOnlyContext(config.market_path, config.system_path)
        self.memory_mb = config.memory_bytes // sandbox.MB if config.memory_bytes else None
        self.algos: dict[int, AlgorithmBase] = {}
        # Threads that were there before any algorithm ran (none in a worker process; a host's own
        # when the worker runs in-process) are not an algorithm's.
        self._threads_before = frozenset(threading.enumerate())

    def handle(self, request: tuple) -> tuple | None:
        """Answer one request."""
        kind = request[0]
        if kind == "run":
            return self._run(*request[1:])
        if kind == "drop":  # no answer: the parent does not wait for it
            self.algos.pop(request[1], None)
            return None
        if kind == "build":
            return self._prebuild(request[1], request[2])
        if kind == "check":
            return self._check(request[1])
        if kind == "catalogue":
            return self._catalogue(request[1], request[2])
        raise ValueError(f"unknown request {kind!r}")

    def _catalogue(self, stem: str, path: str) -> tuple:
        try:
            fields = load_file_info(stem, Path(path))
        except MemoryError:
            return ("info", None, f"used more than {self.memory_mb} MB while loading", True)
        violation = self.guard.reset()
        if violation:
            return ("info", None, f"tried {violation} while loading (algorithms have read-only data access)",
                    True)
        return ("info", fields, None, bool(self._stray_threads()))

    def _create(self, spec: CardSpec) -> AlgorithmBase:
        return create_algorithm(spec.algorithm_type, spec.ticker, spec.capital, json.loads(spec.params_json),
                                [Path(d) for d in spec.dirs] if spec.dirs is not None else None,
                                context=self.context)

    def _build(self, spec: CardSpec) -> AlgorithmBase:
        try:
            return self._create(spec)
        except AlgorithmLoadError as exc:
            raise AlgorithmFault(str(exc), "load") from None
        except ValueError as exc:  # AlgorithmParamError included: stored parameters no longer accepted
            raise AlgorithmFault(f"cannot start the algorithm: {exc}", "load") from None

    def _prebuild(self, key: int, spec: CardSpec) -> tuple:
        """Build and keep card ``key``'s algorithm ahead of its first call."""
        try:
            self.algos[key] = self._build(spec)
            reply: tuple = ("ok", "hold", 0, False)
        except AlgorithmFault as fault:
            reply = ("fault", fault.reason, fault.kind, False)
        except MemoryError:
            reply = ("fault", f"used more than {self.memory_mb} MB", "memory", True)
        except BaseException as exc:  # noqa: BLE001 - a constructor's SystemExit is a fault too
            reply = ("fault", f"cannot start the algorithm: {describe_exception(exc, None)}", "load", False)
        return self._after(reply)

    def _check(self, spec: CardSpec) -> tuple:
        """Build a card's algorithm once to check its parameters (the add dialog); nothing is kept."""
        try:
            reply: tuple = ("params", dict(self._create(spec).params), False)
        except AlgorithmParamError as exc:
            reply = ("fault", str(exc), "param", False)
        except AlgorithmLoadError as exc:
            reply = ("fault", str(exc), "load", False)
        except MemoryError:
            reply = ("fault", f"algorithm '{spec.algorithm_type}' failed to start: used more than "
                              f"{self.memory_mb} MB", "load", True)
        return self._after(reply)

    def _after(self, reply: tuple) -> tuple:
        """``reply``, unless the call tried to write the databases or left threads running."""
        violation = self.guard.reset()
        if violation:
            return ("fault", f"tried {violation} (algorithms have read-only data access)", "write", True)
        stray = self._stray_threads()
        if stray:
            return ("fault", f"left {stray} thread{'s' if stray > 1 else ''} running after its call",
                    "threads", True)
        return reply

    def _run(self, key: int, spec: CardSpec | None, when: float, algo_id: int) -> tuple:
        current_time = datetime.fromtimestamp(when, timezone.utc)
        self.context.begin_minute(int(when) // 60 * 60)
        algo = self.algos.get(key)
        try:
            if algo is None:
                if spec is None:
                    return ("fault", "the worker lost this card's algorithm", "exception", True)
                algo = self.algos[key] = self._build(spec)
            decision = validate_decision(algo.run(current_time, algo_id))
            reply: tuple = ("ok", decision.action, decision.shares, False)
        except AlgorithmFault as fault:
            reply = ("fault", fault.reason, fault.kind, False)
        except MemoryError:
            self.algos.pop(key, None)
            reply = ("fault", f"used more than {self.memory_mb} MB", "memory", True)
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt in a plug-in are faults too
            reply = ("fault", describe_exception(exc, algo), "exception", False)
        return self._after(reply)

    def _stray_threads(self) -> int:
        """Threads an algorithm started that are still alive, after a short grace for ones that are ending."""
        if threading.active_count() == 1:  # the usual case, without building the list
            return 0
        # A foreign (non-Python) thread that called into Python shows as a dummy: it cannot be joined,
        # and it is not one an algorithm started with the threading module.
        others = [t for t in threading.enumerate() if t is not threading.main_thread()
                  and t not in self._threads_before and not isinstance(t, threading._DummyThread)]
        for thread in others:
            thread.join(THREAD_GRACE_S)
        return sum(1 for t in others if t.is_alive())


def serve(conn: Any, config: WorkerConfig, idle: Any = None) -> None:
    """The worker's main loop (the process target): set up, then answer until the pipe closes.

    Each answer is sent before the next request is read (the parent tells from the answers which
    call is in progress); when no request is waiting, one byte on ``idle`` wakes the parent, which
    then reads all the answers at once instead of waking for each one.
    """
    sandbox.die_with_parent()
    if config.memory_bytes:
        sandbox.limit_memory(config.memory_bytes)
    worker = Worker(config)
    worker.guard.install()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        # A "runs" message carries several calls; each is answered on its own, as it ends, so the
        # parent always knows which call is in progress.
        for one in (("run", *item) for item in request[1]) if request[0] == "runs" else (request,):
            try:
                reply = worker.handle(one)
            except MemoryError:
                reply = ("fault", f"used more than {worker.memory_mb} MB", "memory", True)
            if reply is not None:
                conn.send(reply)
                if reply[-1] is True:
                    break  # suspect now: the parent replaces this process and gives the rest to another
        if idle is not None and not conn.poll():
            idle.send_bytes(b".")


def preload() -> Sequence[str]:
    """Modules the fork server imports once so that each new worker starts warm."""
    return (__name__,)
