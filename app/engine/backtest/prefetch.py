"""A long replay's bars read by a second process, chunk by chunk, while the replay runs.

Reading five years of minutes from stocks.db is a sixth of a backtest command's time, nearly all
of it making Python numbers of SQLite's values. A reader forked at the start makes them on another
core, a few sessions first and then ever longer chunks, and hands each over packed, in memory shared
with the replay (unpacking costs it a few milliseconds); the replay starts on the first chunk and
finds the next ones ready as it goes.

The reader must be forked before the forking process opens any SQLite connection (SQLite's locks
are per process: a connection carried across a fork shares lock state it does not hold) and
before the worker's sandbox, which forbids forks, is installed: the backtest worker forks it first
thing. Its own connection reads its own state of the file, so the replay checks each chunk's
count against its own snapshot's and reads the chunk itself on any difference or failure.
"""

from __future__ import annotations

import mmap
import os
from array import array
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

# Below this many bars the fork and the hand-over cost more than they save.
MIN_BARS = 100_000
FIRST_SESSIONS = 10  # the first chunk (with the warm-up): ready before the replay has set itself up
_WAIT_S = 120.0  # a reader that answers nothing for this long is given up (the replay reads itself)
_FAILED = -1

Columns = tuple["array[int]", "array[float]", list[float]]


class BarReader:
    """A forked reader of ``symbol``'s ``ts``/``open``/``close`` columns, chunk by chunk: chunk k
    holds the bars with ``bounds[k] <= ts < bounds[k + 1]``, at most ``capacity`` bars in all (the
    session minutes of the span: the store holds no others).

    It waits for :meth:`go` (sent once the bars are complete in stocks.db), then reads every chunk
    in one read transaction, writes it into the shared buffer and says so. :meth:`next_chunk`
    returns the chunks in order; :meth:`close` ends the reader.
    """

    def __init__(self, stocks_db: Path, symbol: str, bounds: list[int], capacity: int) -> None:
        self.symbol, self.bounds = symbol, bounds
        self._capacity = capacity
        self._shared = mmap.mmap(-1, max(1, capacity) * 24)  # anonymous and shared: the child writes, we read
        self._conn, child = Pipe(duplex=True)
        self._taken = 0  # bars handed over so far
        # os.fork, not multiprocessing.Process: the backtest worker is a daemon process, which
        # multiprocessing allows no children.
        self._pid: int | None = os.fork()
        if self._pid == 0:
            try:
                # Only its own pipe: a descriptor of the worker's (its pipe to the command) kept open
                # here would hide the worker's end from whoever waits on it.
                keep = child.fileno()
                os.closerange(3, keep)
                os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
                _read(child, self._shared, capacity, str(stocks_db), symbol, bounds)
            finally:
                os._exit(0)  # nothing of the forked state (the caller's objects) is cleaned up here
        child.close()

    def go(self) -> None:
        """Start reading: the store holds every bar the replay will run on."""
        try:
            self._conn.send_bytes(b"go")
        except OSError:
            pass  # the reader is gone: next_chunk() says so

    def next_chunk(self) -> Columns | None:
        """The next chunk's columns (oldest first; ts and open as arrays, the closes as a list, which
        algorithms are handed slices of), or None if the reader failed or answered nothing in time
        (it is then closed)."""
        try:
            if not self._conn.poll(_WAIT_S):
                raise EOFError
            count = self._conn.recv()
        except (EOFError, OSError):
            self.close()
            return None
        if not isinstance(count, int) or not self._taken <= count <= self._capacity:
            self.close()
            return None
        start, cap = self._taken, self._capacity
        self._taken = count
        stamps, opens, closes = array("q"), array("d"), array("d")
        stamps.frombytes(self._shared[start * 8:count * 8])
        opens.frombytes(self._shared[(cap + start) * 8:(cap + count) * 8])
        closes.frombytes(self._shared[(2 * cap + start) * 8:(2 * cap + count) * 8])
        return stamps, opens, closes.tolist()

    def close(self) -> None:
        """Free the pipe: a reader still waiting ends at once (the worker's sandbox allows no kill).
        It is reaped here if it has ended, else when the worker process ends."""
        self._conn.close()
        pid, self._pid = self._pid, None
        if pid is not None:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _read(conn: Any, shared: mmap.mmap, capacity: int, stocks_db: str, symbol: str, bounds: list[int]) -> None:
    """The reader's side: wait for the word, read the chunks in one snapshot of its own, hand them over."""
    from app.engine.plugins import sandbox
    from app.storage.market_store import MarketStore

    sandbox.die_with_parent()
    try:
        if conn.recv_bytes() != b"go":
            return
        with MarketStore(stocks_db, readonly=True) as store, store.reading():
            count = 0
            for start, end in zip(bounds, bounds[1:]):
                stamps, opens, closes = store.bar_columns(symbol, start, end - 1)
                if count + len(stamps) > capacity:
                    conn.send(_FAILED)
                    return
                for offset, column in ((0, array("q", stamps)), (capacity, array("d", opens)),
                                       (2 * capacity, array("d", closes))):
                    shared[(offset + count) * 8:(offset + count + len(stamps)) * 8] = column.tobytes()
                count += len(stamps)
                conn.send(count)
    except Exception:  # noqa: BLE001 - any failure: the replay reads the rest itself
        return
