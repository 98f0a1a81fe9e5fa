"""What a worker process does to itself before it runs algorithm code: a memory limit, dying with
its parent, and an audit hook that refuses every way Python offers to write the databases.

The databases are reached by the worker only through ``mode=ro`` connections. An algorithm could
still open system.db itself, so the hook refuses, for the whole process: a SQLite connection that is
not read-only to a file of the data folder, opening such a file (or one linked to it) for writing,
renaming, removing, linking or truncating it, loading SQLite extensions, starting programs, and
signalling other processes (the kiosk). Native code (``ctypes``, extension modules) is not
covered. Each refusal is also remembered, so the
card is faulted even when the algorithm catches the ``PermissionError``. Audit hooks cannot be
removed from Python once added.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

MB = 1024 * 1024

_PROGRAM_EVENTS = frozenset((
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
    "pty.spawn", "sqlite3.enable_load_extension", "sqlite3.load_extension", "os.kill", "os.killpg",
    "signal.pthread_kill",
))
# ctypes stays allowed: numpy and pandas load libraries through it at import. Native code can
# therefore still reach the files; closing that needs an OS sandbox (Landlock, another user).
_PATH_EVENTS = {  # event -> positions of the path arguments
    "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.link": (0, 1), "os.symlink": (1,),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "shutil.rmtree": (0,),
    "shutil.move": (0, 1), "shutil.copyfile": (1,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def limit_memory(limit_bytes: int) -> None:
    """Cap the process's address space: allocations past it fail with ``MemoryError``."""
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def address_space() -> int:
    """This process's address space now, in bytes (0 where /proc does not say)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def limit_memory_beyond_now(extra_bytes: int) -> None:
    """Cap the address space at what the process holds now plus ``extra_bytes``: a worker forked from
    a large process (a command that has imported much) gets the same room as one from a small one."""
    limit_memory(address_space() + extra_bytes)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class WriteGuard:
    """The audit hook of one worker; ``violation`` holds the first refused attempt since ``reset``."""

    def __init__(self, protected: Iterable[Path], *, whole_folder: bool = True) -> None:
        protected = list(protected)
        # The whole data folder (cards' workers), or only the files and their -wal/-shm (backtests,
        # which write the bars they fetch into stocks.db beside system.db).
        self._folders = tuple({os.path.realpath(Path(p).parent) for p in protected}) if whole_folder else ()
        self._files = {os.path.realpath(f"{p}{suffix}") for p in protected
                       for suffix in ("", "-wal", "-shm", "-journal")}
        self._inodes: set[tuple[int, int]] = set()
        for path in protected:
            for suffix in ("", "-wal", "-shm", "-journal"):
                try:
                    st = os.stat(f"{path}{suffix}")
                except OSError:
                    continue
                self._inodes.add((st.st_dev, st.st_ino))
        self.violation: str | None = None
        self._inside = False

    def install(self) -> None:
        """Add the hook to this process (for good)."""
        sys.addaudithook(self._hook)

    def reset(self) -> str | None:
        """The violation recorded since the last reset, and forget it."""
        seen, self.violation = self.violation, None
        return seen

    def _protected(self, target: Any) -> bool:
        if isinstance(target, int) or target is None:
            return False
        try:
            path = os.fsdecode(target)
        except TypeError:
            return False
        real = os.path.realpath(path)
        if real in self._files:
            return True
        if any(real == folder or real.startswith(folder + os.sep) for folder in self._folders):
            return True
        try:
            st = os.stat(real)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self._inodes

    def _refuse(self, what: str) -> None:
        if self.violation is None:
            self.violation = what
        raise PermissionError(f"AutoTrader algorithms have read-only data access: {what} is not allowed")

    def _hook(self, event: str, args: tuple) -> None:
        if self._inside:  # our own os.stat/realpath calls raise events too
            return
        if event in _PROGRAM_EVENTS:
            self._refuse(event.replace("_", " "))
        if event not in _PATH_EVENTS and event not in ("open", "sqlite3.connect"):
            return
        self._inside = True
        try:
            refused = self._check(event, args)
        finally:
            self._inside = False
        if refused:
            self._refuse(refused)

    def _check(self, event: str, args: tuple) -> str | None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writes and self._protected(path):
                return f"writing {os.path.basename(os.fsdecode(path))}"
            return None
        if event == "sqlite3.connect":
            database = args[0] if args else None
            if database is None or isinstance(database, int):
                return None
            text = os.fsdecode(database)
            if text == ":memory:" or text == "":
                return None
            if text.startswith("file:"):
                parts = urlsplit(text)
                if parse_qs(parts.query).get("mode") == ["ro"]:
                    return None
                text = parts.path
            if self._protected(text):
                return f"opening {os.path.basename(text)} for writing"
            return None
        for position in _PATH_EVENTS[event]:
            if position < len(args) and self._protected(args[position]):
                return f"{event} on {os.path.basename(os.fsdecode(args[position]))}"
        return None
