"""The later part of a long replay's bars, read by a second process while the replay starts.

Reading five years of minutes from stocks.db is a sixth of a backtest command's time, nearly all
of it making Python numbers of SQLite's values. A reader forked at the start makes the later
sessions' numbers on another core and hands them over packed, in memory shared with the replay
(unpacking costs it a few milliseconds); the replay reads the first sessions itself and is busy
with them meanwhile.

The reader must be forked before the forking process opens any SQLite connection (SQLite's locks
are per process: a connection carried across a fork shares lock state it does not hold) and
before the worker's sandbox, which forbids forks, is installed: the backtest worker forks it first
thing. Its own connection reads its own state of the file, so the replay checks the count it
receives against its snapshot's and reads the part itself on any difference or failure.
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
HEAD_SHARE = 0.25  # the replay reads this share of the sessions itself: the reader is done before it is
_WAIT_S = 120.0  # a reader that answers nothing for this long is given up (the replay reads the part itself)
_FAILED = -1

Columns = tuple[list[int], list[float], list[float]]


class LaterBars:
    """A forked reader of ``symbol``'s ``ts``/``open``/``close`` columns with ``from_ts <= ts <= end_ts``,
    at most ``capacity`` bars (the session minutes of that span: the store holds no others).

    It waits for :meth:`go` (sent once the bars are complete in stocks.db), reads, writes them
    into the shared buffer, says how many, and ends. :meth:`take` returns the columns, or None when
    the reader failed; :meth:`close` ends it.
    """

    def __init__(self, stocks_db: Path, symbol: str, from_ts: int, end_ts: int, capacity: int) -> None:
        self.symbol, self.from_ts, self.end_ts = symbol, from_ts, end_ts
        self._capacity = capacity
        self._shared = mmap.mmap(-1, max(1, capacity) * 24)  # anonymous and shared: the child writes, we read
        self._conn, child = Pipe(duplex=True)
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
                _read(child, self._shared, capacity, str(stocks_db), symbol, from_ts, end_ts)
            finally:
                os._exit(0)  # nothing of the forked state (the caller's objects) is cleaned up here
        child.close()
        self._taken = False

    def go(self) -> None:
        """Start reading: the store holds every bar the replay will run on."""
        try:
            self._conn.send_bytes(b"go")
        except OSError:
            pass  # the reader is gone: take() says so

    def take(self) -> Columns | None:
        """The columns read (oldest first), or None if the reader failed or answered nothing in time."""
        if self._taken:
            raise RuntimeError("the later bars were taken already")
        self._taken = True
        try:
            if not self._conn.poll(_WAIT_S):
                return None
            count = self._conn.recv()
        except (EOFError, OSError):
            return None
        finally:
            self.close()
        if not isinstance(count, int) or not 0 <= count <= self._capacity:
            return None
        stamps, opens, closes = array("q"), array("d"), array("d")
        cap = self._capacity
        stamps.frombytes(self._shared[:count * 8])
        opens.frombytes(self._shared[cap * 8:(cap + count) * 8])
        closes.frombytes(self._shared[2 * cap * 8:(2 * cap + count) * 8])
        self._shared.close()
        return stamps.tolist(), opens.tolist(), closes.tolist()

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


def _read(conn: Any, shared: mmap.mmap, capacity: int, stocks_db: str, symbol: str, from_ts: int,
          end_ts: int) -> None:
    """The reader's side: wait for the word, read the columns on a connection of its own, hand them over."""
    from app.engine.plugins import sandbox
    from app.storage.market_store import MarketStore

    sandbox.die_with_parent()
    try:
        if conn.recv_bytes() != b"go":
            return
        with MarketStore(stocks_db, readonly=True) as store:
            stamps, opens, closes = store.bar_columns(symbol, from_ts, end_ts)
        count = len(stamps)
        if count > capacity:
            conn.send(_FAILED)
            return
        packed = (array("q", stamps), array("d", opens), array("d", closes))
        for start, column in zip((0, capacity, 2 * capacity), packed):
            shared[start * 8:(start + count) * 8] = column.tobytes()
        conn.send(count)
    except Exception:  # noqa: BLE001 - any failure: the replay reads the part itself
        return
