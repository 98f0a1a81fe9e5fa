"""Where one mode's files live, and opening its stores the same way everywhere (CLI, engine, tests)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from app.engine.marketdata.calendar import MarketCalendar
from app.engine.system.settings import Settings
from app.storage.market_store import MarketStore
from app.storage.system_store import SystemStore


@dataclass(frozen=True, slots=True)
class DataPaths:
    """Files of one mode's data folder (sim/, paper/ or live/)."""

    root: Path
    stocks_db: Path
    system_db: Path
    log_dir: Path
    backup_dir: Path

    @classmethod
    def for_folder(cls, root: Path) -> "DataPaths":
        """The standard layout under ``root``."""
        root = Path(root)
        return cls(root=root, stocks_db=root / "stocks.db", system_db=root / "system.db",
                   log_dir=root / "logs", backup_dir=root / "backups")

    def create(self) -> "DataPaths":
        """Make the folders (owner-only) and take group and other access away from what is already there:
        system.db holds the PIN hash, and a readable copy lets anyone try every 4-digit PIN offline.
        Raises OSError with the path when the data folder cannot be made."""
        for folder in (self.root, self.log_dir, self.backup_dir):
            folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        restrict_access(self)
        return self


FOLDER_MODE = 0o700
FILE_MODE = 0o600


def _restrict(path: Path, allowed: int) -> None:
    # Only ever removes permissions: a folder a person made read-only stays read-only.
    try:
        current = stat.S_IMODE(path.lstat().st_mode)
        if current & ~allowed:
            os.chmod(path, current & allowed)
    except OSError:
        pass  # not ours (a shared mount) or gone: nothing to fix here


def restrict_access(paths: DataPaths) -> None:
    """Folders 0700 and database, backup and lock files 0600 at most (existing ones included)."""
    for folder in (paths.root, paths.log_dir, paths.backup_dir):
        _restrict(folder, FOLDER_MODE)
    for folder in (paths.root, paths.backup_dir):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and (".db" in entry.name or entry.name.endswith(".lock")):
                _restrict(Path(entry.path), FILE_MODE)


def data_paths(settings: Settings, mode: str | None = None) -> DataPaths:
    """The data folder of ``mode`` (default: the settings' mode)."""
    return DataPaths.for_folder(settings.data_dir(mode))


def open_market_store(paths: DataPaths, calendar: MarketCalendar | None = None) -> MarketStore:
    """stocks.db for this thread, refusing bars outside regular session minutes."""
    calendar = calendar or MarketCalendar()
    return MarketStore(paths.stocks_db, minute_filter=calendar.is_session_minute)


def open_system_store(paths: DataPaths, now: Callable[[], datetime] | None = None) -> SystemStore:
    """system.db for this thread; ``now`` stamps records (the engine passes its clock)."""
    return SystemStore(paths.system_db, now=now)
