"""Algorithms in worker processes: the parent side.

``WorkerPool`` has the runner's interface (``load``, ``run_many``, ``discard``, ``close``) but the
algorithm objects live in a few worker processes (``worker_main.py``), which import the files,
build the objects and run every call. A worker that ends its process, overruns the budget, runs
out of memory, tries to write the databases or leaves threads running is killed and replaced;
only the card whose call it was running is faulted, and the threads it started die with it.

Workers come from a ``forkserver`` (a clean interpreter started by exec, never a fork of the
kiosk with its Qt and threads), which imports the worker module once so a replacement starts in
milliseconds. Each worker answers one request at a time, so the card in progress is always
known. A card sticks to the worker that built it; when that worker is stuck on a slow call,
an idle worker takes the card's call over and builds its own copy (algorithms are stateless
between runs by contract).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from decimal import Decimal
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Mapping, Sequence

from app.engine.algorithm_api import AlgorithmParamError
from app.engine.plugins.loader import AlgorithmInfo, AlgorithmLoadError, info_from_fields
from app.engine.plugins.runner import HOLD, AlgorithmFault, Decision
from app.engine.plugins.sandbox import MB
from app.engine.plugins.worker_main import CardSpec, WorkerConfig, serve

log = logging.getLogger("autotrader.engine.workers")

DEFAULT_MEMORY_MB = 512
START_TIMEOUT_S = 30.0  # a new worker's own start-up is not charged to any card
START_LIMIT_S = 30.0  # importing a file and constructing its algorithm outside a minute (start, add)
_WORKER_MODULE = "app.engine.plugins.worker_main"
_context_lock = threading.Lock()
_context: Any = None


def worker_context() -> Any:
    """The multiprocessing context of every worker: forkserver, warmed with the worker module."""
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            # Without "__main__" in the list the server does not re-run the kiosk's main script.
            context.set_forkserver_preload([_WORKER_MODULE])
            _context = context
        return _context


def death_reason(exitcode: int | None) -> str:
    """Why a worker that was not asked to stop is gone, as a sentence for the card."""
    if exitcode is None or exitcode >= 0:
        suffix = f" (exit status {exitcode})" if exitcode else ""
        return f"the algorithm ended its process{suffix}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return f"the algorithm's process was killed ({name}; out of memory?)"
    return f"the algorithm's process crashed ({name})"


class _Proc:
    """One worker process and what the parent knows about it."""

    def __init__(self, config: WorkerConfig, name: str) -> None:
        context = worker_context()
        self.conn, child = context.Pipe(duplex=True)
        self.idle, idle_child = context.Pipe(duplex=False)
        self.process = context.Process(target=serve, args=(child, config, idle_child), name=name, daemon=True)
        self.process.start()
        child.close()
        idle_child.close()
        self.ready = False
        self.alive = True
        self.holds: set[int] = set()  # cards whose objects this worker has built
        self.queue: deque[_Call] = deque()  # sent and not answered yet, in the order sent
        self.head_since = 0.0  # about when the call at the head of the queue began

    def send(self, message: tuple | None) -> bool:
        try:
            self.conn.send(message)
            return True
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """End the process (and every thread in it) now."""
        self.alive = False
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()
        self.idle.close()

    def drain_idle(self) -> None:
        """Forget the idle signals received so far."""
        try:
            while self.idle.poll():
                self.idle.recv_bytes()
        except (EOFError, OSError):
            pass

    def exitcode(self) -> int | None:
        self.process.join(1)
        return self.process.exitcode


class _Call:
    """One card's call in a batch; ``owner`` is the worker whose answer counts."""

    __slots__ = ("spec", "current_time", "algo_id", "result", "owner")

    def __init__(self, spec: CardSpec, current_time: Any, algo_id: int) -> None:
        self.spec = spec
        self.current_time = current_time
        self.algo_id = algo_id
        self.result: Decision | AlgorithmFault | None = None
        self.owner: _Proc | None = None


class WorkerPool:
    """Runs cards' algorithms in worker processes within a time budget; one bad card faults alone.

    Calls are pipelined: each worker is sent up to ``DEPTH`` calls and answers them in order, so
    the first unanswered one is the call in progress. When a worker's current call is slow, the
    calls queued behind it are handed to other workers (its late answers to them are ignored).
    Not thread-safe: one thread (the engine thread) drives it. ``market_path``/``system_path``
    are what the workers' read-only data context opens.
    """

    DEPTH = 64  # calls in a worker's pipe at once (about 10 kB: well inside the pipe's buffer)
    BATCH = 16  # run calls per message to a worker (each is still answered on its own)

    def __init__(self, *, market_path: Path | str | None, system_path: Path | str | None,
                 time_budget_s: float = 5.0, workers: int = 2, memory_mb: int = DEFAULT_MEMORY_MB,
                 start_limit_s: float = START_LIMIT_S) -> None:
        if not time_budget_s > 0:
            raise ValueError(f"time budget must be positive, got {time_budget_s!r}")
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers!r}")
        if memory_mb < 64:
            raise ValueError(f"a worker needs at least 64 MB, got {memory_mb!r}")
        self.time_budget_s = float(time_budget_s)
        self.start_limit_s = float(start_limit_s)
        self.memory_mb = int(memory_mb)
        self._config = WorkerConfig(str(market_path) if market_path else None,
                                    str(system_path) if system_path else None, self.memory_mb * MB)
        self._target = workers
        self._procs: list[_Proc] = []
        self._pin: dict[int, _Proc] = {}  # card -> the worker that holds its object
        self._closed = False
        self._started = 0
        self._slow_after = min(0.05, self.time_budget_s / 4)

    def warm(self) -> None:
        """Start the workers and wait until they are ready (engine start: the first minute then
        finds them running). Without it they start at the first call that needs them."""
        self._fill()
        self._await_ready()

    # --- the runner interface ------------------------------------------------------------

    @property
    def worker_count(self) -> int:
        """How many worker processes the pool keeps."""
        return self._target

    def load(self, key: int, algorithm_type: str, ticker: str, capital: Any, params: Mapping[str, Any],
             dirs: Sequence[Path] | None, context: Any = None) -> CardSpec:
        """A handle for card ``key``; the worker builds the object at its first call (``context`` is
        ignored: workers read through their own read-only context). Load errors arrive as faults."""
        return CardSpec(key, algorithm_type, ticker, str(Decimal(str(capital))),
                        json.dumps(dict(params), sort_keys=True, default=str),
                        tuple(str(d) for d in dirs) if dirs is not None else None)

    def discard(self, key: int) -> None:
        """Forget card ``key`` (stopped, resumed or faulted): its worker drops the object."""
        proc = self._pin.pop(key, None)
        if proc is not None and proc.alive and key in proc.holds:
            proc.holds.discard(key)
            proc.send(("drop", key))

    def check(self, algorithm_type: str, ticker: str, capital: Any, params: Mapping[str, Any],
              dirs: Sequence[Path] | None) -> dict[str, Any]:
        """Build the algorithm once in a worker, within the budget, and return its resolved parameters;
        ``AlgorithmParamError``/``AlgorithmLoadError`` say why not (a worker that hangs or dies is
        replaced and its reason becomes the load error)."""
        if self._closed:
            raise RuntimeError("WorkerPool is closed")
        spec = self.load(0, algorithm_type, ticker, capital, params, dirs)
        self._fill()
        self._await_ready()
        proc = next((p for p in self._procs if p.ready and p.alive and not p.queue), None)
        failed = f"algorithm '{algorithm_type}' failed to start"
        if proc is None or not proc.send(("check", spec)):
            raise AlgorithmLoadError(f"{failed}: no algorithm worker is free")
        reply = None
        if wait([proc.conn, proc.process.sentinel], self.start_limit_s):
            try:
                reply = proc.conn.recv()
            except (EOFError, OSError):
                reply = None
            if reply is None:
                reason = death_reason(proc.exitcode())
                self._replace(proc, None, None)
                raise AlgorithmLoadError(f"{failed}: {reason}")
        else:
            self._replace(proc, "overran its budget while starting an algorithm", None)
            raise AlgorithmLoadError(f"{failed}: took longer than {self.start_limit_s:g} s")
        if reply[-1]:
            self._replace(proc, "is suspect after starting an algorithm", None)
        if reply[0] == "params":
            return dict(reply[1])
        if reply[2] == "param":
            raise AlgorithmParamError(reply[1])
        if reply[2] in ("write", "threads"):
            raise AlgorithmLoadError(f"{failed}: {reply[1]}")
        raise AlgorithmLoadError(reply[1])

    def run(self, spec: CardSpec, current_time: Any, algo_id: int) -> Decision:
        """One call; raises ``AlgorithmFault`` on any failure."""
        result = self.run_many([(spec, current_time, algo_id)])[0]
        if isinstance(result, AlgorithmFault):
            raise result
        return result

    def prepare(self, specs: Sequence[CardSpec]) -> dict[int, AlgorithmFault]:
        """Import and construct cards' algorithms in the workers ahead of their first minute (engine
        start), under the start limit rather than a minute's budget: a file that takes seconds to
        import (pandas) must not fault at its first call. Returns the cards that failed and why."""
        if self._closed:
            raise RuntimeError("WorkerPool is closed")
        wanted = [spec for spec in specs if spec.key not in self._pin]
        if not wanted:
            return {}
        calls = [_Call(spec, None, 0) for spec in wanted]
        results = self._batch(calls, self.start_limit_s, " to start")
        return {call.spec.key: result for call, result in zip(calls, results)
                if isinstance(result, AlgorithmFault)}

    def run_many(self, items: Sequence[tuple[CardSpec, Any, int]]) -> list[Decision | AlgorithmFault]:
        """Run several cards' calls in parallel across the workers inside ONE budget window.

        A call still running when the window closes is faulted as a timeout and its worker
        replaced; calls not started by then are not started at all.
        """
        if self._closed:
            raise RuntimeError("WorkerPool is closed")
        if not items:
            return []
        return self._batch([_Call(spec, when, algo_id) for spec, when, algo_id in items], self.time_budget_s, "")

    def _batch(self, calls: list[_Call], limit: float, doing: str) -> list[Decision | AlgorithmFault]:
        self._fill()
        self._await_ready()
        deadline = time.monotonic() + limit
        pending: deque[_Call] = deque(calls)
        while True:
            now = time.monotonic()
            self._reclaim_slow(pending, now)
            self._dispatch(pending, now)
            if not pending and not any(c.result is None for p in self._procs for c in p.queue if c.owner is p):
                break
            left = deadline - now
            if left <= 0:
                break
            # Wake on a worker going idle, a worker dying or a new worker's first word, not on
            # each answer; then read every answer that has arrived.
            waiting = [p.idle if p.ready else p.conn for p in self._procs if p.alive] + \
                [p.process.sentinel for p in self._procs if p.queue]
            queued = pending or any(len(p.queue) > 1 for p in self._procs)
            wait(waiting, min(left, self._slow_after) if queued else left)
            self._collect(pending)
        self._collect(None)  # answers that came in since the last look
        expired = time.monotonic() >= deadline
        for proc in [p for p in self._procs if p.queue]:
            head = proc.queue[0]
            owned = head.owner is proc and head.result is None
            if not owned and not expired:
                continue  # only late copies of calls answered elsewhere: let it finish them
            if owned:
                head.result = AlgorithmFault(f"took longer than {limit:g} s{doing}", "timeout")
            self._replace(proc, "overran its budget", None)
        for call in calls:
            if call.result is None:
                call.result = AlgorithmFault(
                    f"not started within {limit:g} s: every worker was busy", "not_started")
        return [call.result for call in calls]  # type: ignore[misc]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (their calls and threads end with them)."""
        self._closed = True
        for proc in self._procs:
            proc.send(None)
        for proc in self._procs:
            proc.process.join(0.5)
            proc.kill()
        self._procs.clear()
        self._pin.clear()

    # --- internals -----------------------------------------------------------------------

    def _fill(self) -> None:
        while len(self._procs) < self._target and not self._closed:
            self._started += 1
            self._procs.append(_Proc(self._config, f"algorithm-worker-{self._started}"))

    def _await_ready(self) -> None:
        """Wait (outside any card's budget) until every worker has started."""
        until = time.monotonic() + START_TIMEOUT_S
        for _ in range(3 * self._target):
            starting = [p for p in self._procs if not p.ready]
            if not starting or time.monotonic() >= until:
                return
            for ready in wait([p.conn for p in starting] + [p.process.sentinel for p in starting],
                              until - time.monotonic()):
                self._take(ready, None)

    def _collect(self, pending: deque[_Call] | None) -> None:
        """Read every answer waiting in the workers' pipes; notice workers that died."""
        for proc in list(self._procs):
            if not proc.alive:
                continue
            proc.drain_idle()
            try:
                while proc.alive and proc.conn.poll():
                    self._take(proc.conn, pending)
            except (EOFError, OSError):
                self._died(proc, pending)
                continue
            if proc.alive and not proc.process.is_alive():
                self._died(proc, pending)

    def _proc_of(self, handle: Any) -> _Proc | None:
        for proc in self._procs:
            if handle is proc.conn or handle == proc.process.sentinel:
                return proc
        return None

    def _take(self, handle: Any, pending: deque[_Call] | None) -> None:
        proc = self._proc_of(handle)
        if proc is None or not proc.alive:
            return
        try:
            reply = proc.conn.recv() if handle is proc.conn else None
        except (EOFError, OSError):
            reply = None
        if reply is None:
            if handle is proc.conn or not proc.process.is_alive():
                self._died(proc, pending)
            return
        if reply[0] == "ready":
            proc.ready = True
            return
        call = proc.queue.popleft() if proc.queue else None
        proc.head_since = time.monotonic()
        if call is not None and call.owner is proc and call.result is None:
            if reply[0] == "ok":
                call.result = Decision(reply[1], reply[2]) if reply[1] != "hold" else HOLD
            else:
                call.result = AlgorithmFault(reply[1], reply[2])
                if reply[2] in ("load", "memory"):
                    proc.holds.discard(call.spec.key)
        if reply[-1]:
            self._replace(proc, f"is suspect after card {call.spec.key if call else '?'}", pending)

    def _died(self, proc: _Proc, pending: deque[_Call] | None) -> None:
        reason = death_reason(proc.exitcode())
        head = proc.queue[0] if proc.queue else None
        if head is not None and head.owner is proc and head.result is None:
            head.result = AlgorithmFault(reason, "died")
        log.warning("algorithm worker %s ended (%s)%s", proc.process.pid, reason,
                    f" during card {head.spec.key}'s call" if head else "")
        self._replace(proc, None, pending)

    def _replace(self, proc: _Proc, why: str | None, pending: deque[_Call] | None) -> None:
        """Kill ``proc`` and start another; its calls not answered yet go back to ``pending``."""
        if why:
            log.warning("algorithm worker %s %s: replacing it", proc.process.pid, why)
        proc.kill()
        for key in proc.holds:
            if self._pin.get(key) is proc:
                del self._pin[key]
        for call in proc.queue:
            if call.owner is proc and call.result is None:
                call.owner = None
                if pending is not None:
                    pending.append(call)
        proc.queue.clear()
        if proc in self._procs:
            self._procs.remove(proc)
        self._fill()

    def _reclaim_slow(self, pending: deque[_Call], now: float) -> None:
        """Calls queued behind a slow call go back to ``pending`` for the other workers."""
        for proc in self._procs:
            if len(proc.queue) > 1 and now - proc.head_since >= self._slow_after:
                for call in list(proc.queue)[1:]:
                    if call.owner is proc and call.result is None:
                        call.owner = None
                        pending.append(call)

    def _dispatch(self, pending: deque[_Call], now: float) -> None:
        """Hand out pending calls one per worker per round, so new cards spread evenly.

        The pending calls are sorted once (each worker's own cards, and those any worker may take),
        not searched for each call; a worker's run calls of one dispatch travel in few messages.
        """
        if not pending:
            return
        procs = [p for p in self._procs if p.ready and p.alive
                 and not (p.queue and now - p.head_since >= self._slow_after)]  # busy with a slow call
        if not procs:
            return
        own: dict[_Proc, deque[_Call]] = {proc: deque() for proc in procs}
        free: deque[_Call] = deque()  # new cards, and cards whose worker is gone or busy with a slow call
        held: list[_Call] = []  # cards of a worker that cannot take them now but will
        for call in pending:
            holder = self._pin.get(call.spec.key)
            if holder in own:
                own[holder].append(call)
            elif holder is None or not holder.alive or (holder.queue and now - holder.head_since >= self._slow_after):
                free.append(call)
            else:
                held.append(call)
        pending.clear()
        runs: dict[_Proc, list[tuple]] = {}
        progress = True
        while progress:
            progress = False
            for proc in procs:
                if not (proc.alive and len(proc.queue) < self.DEPTH):
                    continue
                mine = own[proc]
                if not (mine or free):
                    continue
                call = mine.popleft() if mine else free.popleft()
                item = self._assign(proc, call, now)
                if call.current_time is None:  # a build: on its own, as before
                    progress = self._post(proc, ("build", call.spec.key, call.spec), pending) or progress
                    continue
                batch = runs.setdefault(proc, [])
                batch.append(item)
                if len(batch) >= self.BATCH:  # let the worker start while the rest is handed out
                    progress = self._post(proc, ("runs", runs.pop(proc)), pending) or progress
                else:
                    progress = True
        for proc, batch in runs.items():
            if proc.alive:
                self._post(proc, ("runs", batch), pending)
        pending.extend(held)
        for mine in own.values():
            pending.extend(mine)
        pending.extend(free)

    def _assign(self, proc: _Proc, call: _Call, now: float) -> tuple:
        """Give ``call`` to ``proc`` (its queue and pins); returns the run item to send it."""
        key = call.spec.key
        holder = self._pin.get(key)
        if holder is not None and holder is not proc:  # taken over from a worker stuck elsewhere
            holder.holds.discard(key)
            holder.send(("drop", key))
        self._pin[key] = proc
        spec = None if key in proc.holds else call.spec
        proc.holds.add(key)
        if not proc.queue:
            proc.head_since = now
        call.owner = proc
        proc.queue.append(call)
        # The time travels as epoch seconds: pickling a datetime looks its class up through the
        # import machinery, which the kiosk's Qt hooks make slow.
        return (key, spec, call.current_time.timestamp(), call.algo_id) if call.current_time is not None else ()

    def _post(self, proc: _Proc, message: tuple, pending: deque[_Call]) -> bool:
        if not proc.send(message):
            self._died(proc, pending)
            return False
        return True


def load_catalogue(items: Sequence[tuple[str, Path]], time_limit_s: float,
                   memory_mb: int = DEFAULT_MEMORY_MB) -> list[AlgorithmInfo]:
    """Execute each file in a worker, one at a time under ``time_limit_s``; a file that hangs, ends
    the process or fails in any way is described as broken. Infos in the order of ``items``."""
    config = WorkerConfig(None, None, memory_mb * MB)
    results: list[AlgorithmInfo] = []
    proc: _Proc | None = None

    def broken(stem: str, path: Path, reason: str) -> AlgorithmInfo:
        return AlgorithmInfo(stem, stem, "", {}, path, reason)

    try:
        for stem, path in items:
            if proc is None:
                proc = _Proc(config, "algorithm-catalogue")
                if not _started(proc):
                    results.append(broken(stem, path, death_reason(proc.exitcode()) + " before loading"))
                    proc.kill()
                    proc = None
                    continue
            proc.send(("catalogue", stem, str(path)))
            reply = None
            if wait([proc.conn, proc.process.sentinel], time_limit_s):
                try:
                    reply = proc.conn.recv()
                except (EOFError, OSError):
                    reply = None
                if reply is None:
                    results.append(broken(stem, path, death_reason(proc.exitcode()) + " while loading"))
            else:
                results.append(broken(stem, path, f"took longer than {time_limit_s:g} s to load"))
            if reply is None:
                proc.kill()
                proc = None
                continue
            _, fields, error, recycle = reply
            results.append(info_from_fields(fields) if fields is not None else broken(stem, path, error))
            if recycle:
                proc.kill()
                proc = None
    finally:
        if proc is not None:
            proc.send(None)
            proc.kill()
    return results


def _started(proc: _Proc) -> bool:
    if not wait([proc.conn, proc.process.sentinel], START_TIMEOUT_S):
        return False
    try:
        return proc.conn.recv()[0] == "ready"
    except (EOFError, OSError):
        return False
