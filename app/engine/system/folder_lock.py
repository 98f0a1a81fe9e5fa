"""One engine per data folder: an exclusive ``flock`` on a lock file in the mode's data folder.

The kernel drops the lock when the holding process dies in any way (kill -9, power cut, crash), so
there is never a stale lock to clear by hand. The holder writes its pid into the file for the
message a second kiosk prints. Admin commands never take the lock: they work beside the kiosk.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

LOCK_FILE = "autotrader.lock"
ACQUIRE_PATIENCE_S = 2.0  # a probe (restore, status) holds a shared lock for microseconds: wait it out


class FolderLocked(RuntimeError):
    """Another process holds the data folder; ``pid`` is its id when known."""

    def __init__(self, folder: Path, pid: int | None):
        self.folder = folder
        self.pid = pid
        holder = f" (pid {pid})" if pid else ""
        super().__init__(f"AutoTrader is already running on this data folder{holder}: {folder}")


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


class FolderLock:
    """The exclusive lock of one data folder, held from :meth:`acquire` until :meth:`release` or death."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, patience_s: float = ACQUIRE_PATIENCE_S) -> "FolderLock":
        """Take the lock or raise :class:`FolderLocked` naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + patience_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    pid = _read_pid(fd)
                    os.close(fd)
                    raise FolderLocked(self.folder, pid) from None
                time.sleep(0.05)  # perhaps a probe's shared lock: gone in a moment
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the kernel also does this when the process ends)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self if self.held else self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def running_engine_pid(folder: Path) -> int | None:
    """The pid of the engine holding ``folder``'s lock, 0 when held by an unknown pid, None when free.

    Probes with a shared lock, which never blocks the holder and is dropped at once.
    """
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _read_pid(fd) or 0
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
