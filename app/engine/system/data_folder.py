"""Where one mode's files live, and opening its stores the same way everywhere (CLI, engine, tests)."""

from __future__ import annotations

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
        """Make the folders; raises OSError with the path when the data folder is not writable."""
        for folder in (self.root, self.log_dir, self.backup_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


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
