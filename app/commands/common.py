"""Helpers shared by the sub-commands: settings, dates, and the exit-code convention."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from app.engine.system.data_folder import DataPaths, data_paths
from app.engine.system.settings import Settings, SettingsError, load_settings

NEW_YORK = ZoneInfo("America/New_York")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_QUIT = 10  # the kiosk was quit from its settings panel: ``supervise`` does not restart it


class CommandError(Exception):
    """A problem the person must fix; printed as one line, exit code 2."""


class DataFolderError(CommandError):
    """The data folder cannot be used (read-only, missing, not creatable, unreadable files)."""


def settings_for(args: argparse.Namespace) -> Settings:
    """Load settings (``--sim`` on the command forces sim mode)."""
    try:
        return load_settings(force_sim=bool(getattr(args, "sim", False)))
    except SettingsError as exc:
        raise CommandError(str(exc)) from None


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot hold AutoTrader's files (missing, read-only file system, not writable), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return "it does not exist (or is not a folder)"
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system — make it writable"
    except OSError:
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return "this user may not write there — fix its permissions"
    return None


def storage_sentence(exc: BaseException, folder: Path) -> str:
    """One sentence for a data folder that cannot be used (read-only, missing, full, damaged)."""
    from app.engine.system.maintenance import storage_problem
    reason = folder_problem(folder) or storage_problem(exc)
    if reason is None and isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
    return f"cannot use the data folder {folder}: {reason or exc}"


def data_folder_failure(args: argparse.Namespace, exc: BaseException) -> str | None:
    """The one sentence for a storage failure (read-only, missing, full, damaged) a command hit anywhere,
    or None when ``exc`` is not one (then it is a bug and keeps its traceback)."""
    from app.engine.system.maintenance import storage_problem
    if storage_problem(exc) is None:
        return None
    try:
        folder = data_paths(settings_for(args)).root
    except CommandError:
        return f"the data folder cannot be used: {storage_problem(exc)}"
    return storage_sentence(exc, folder)


def paths_for(args: argparse.Namespace) -> tuple[Settings, DataPaths]:
    """Settings and the created data folder of their mode (owner-only permissions)."""
    settings = settings_for(args)
    paths = data_paths(settings)
    try:
        paths.create()
    except OSError as exc:
        raise DataFolderError(f"cannot create the data folder {paths.root}: {exc.strerror}") from None
    return settings, paths


def parse_day(text: str, what: str = "date") -> date:
    """A New York calendar day ``YYYY-MM-DD``."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{what} {text!r} is not a date YYYY-MM-DD") from None


def day_range_utc(start: date, end: date) -> tuple[datetime, datetime]:
    """UTC instants covering New York days ``start``..``end`` inclusive (end is exclusive midnight)."""
    if end < start:
        raise CommandError(f"the end date {end} is before the start date {start}")
    begin = datetime.combine(start, time(0), NEW_YORK)
    finish = datetime.combine(end + timedelta(days=1), time(0), NEW_YORK)
    return begin.astimezone(ZoneInfo("UTC")), finish.astimezone(ZoneInfo("UTC"))


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print one line to stderr and return the exit code."""
    print(f"autotrader: {message}", file=sys.stderr)
    return code
