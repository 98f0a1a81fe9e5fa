"""``autotrader restore BACKUP``: put a system.db backup back in place, keeping the current file aside."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from app.commands.common import EXIT_FAILED, EXIT_OK, CommandError, paths_for
from app.engine.system.data_folder import DataPaths
from app.engine.system.settings import MODES
from app.storage.timefmt import parse_utc_text, utc_text

RECENT_CYCLE = timedelta(minutes=2)


def register(sub: argparse._SubParsersAction) -> None:
    """Add restore to the parser."""
    p = sub.add_parser("restore", help="replace system.db with a backup (the current file is kept aside)")
    p.add_argument("backup", type=Path, help="a backup file, e.g. <data>/sim/backups/system-2024-06-04.db")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--sim", action="store_true", help="restore the simulated market's system.db")
    p.set_defaults(func=cmd_restore)


def processes_holding(path: Path) -> list[int]:
    """Ids of other processes that have ``path`` (or its -wal) open, from /proc (Linux; [] elsewhere)."""
    wanted = {str(Path(path).resolve()), str(Path(path).resolve()) + "-wal"}
    me = os.getpid()
    found = []
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid == me:
            continue
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to look at
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in wanted:
                        found.append(pid)
                        break
                except OSError:
                    continue
    return found


def kiosk_activity(paths: DataPaths, mode: str, now: datetime | None = None) -> str | None:
    """Why the kiosk seems to be running on this system.db (a reason to refuse), or None."""
    from app.engine.system.folder_lock import running_engine_pid
    pid = running_engine_pid(paths.root)
    if pid is not None:
        return f"AutoTrader is running on this data folder{f' (pid {pid})' if pid else ''}"
    holders = processes_holding(paths.system_db)
    if holders:
        return f"process {', '.join(map(str, holders))} has {paths.system_db} open"
    now = now or datetime.now(timezone.utc)
    try:
        from app.engine.system.maintenance import LAST_CYCLE_KEY  # here: other commands start without it
        from app.storage.backup import peek_config

        cycle = json.loads(peek_config(paths.system_db, LAST_CYCLE_KEY) or "null")
    except ValueError:
        cycle = None
    if isinstance(cycle, dict):
        # "wall" is real time; older records only have the engine clock's time, real outside sim.
        stamp = cycle.get("wall") or (cycle.get("started") if mode != "sim" else None)
        try:
            when = parse_utc_text(stamp) if stamp else None
        except ValueError:
            when = None
        if when is not None and timedelta(0) - RECENT_CYCLE <= now - when <= RECENT_CYCLE:
            return f"its last trading cycle ran at {utc_text(when)}, less than 2 minutes ago"
    return None


def _other_mode(backup: Path, paths: DataPaths) -> str | None:
    """The mode whose backups folder holds ``backup`` when that is not the target's mode (for backups
    from before each copy recorded its mode)."""
    folder = backup.resolve().parent
    root = paths.root.resolve()
    if folder.name == "backups" and folder.parent.name in MODES and folder.parent.parent == root.parent \
            and folder.parent != root:
        return folder.parent.name
    return None


def _confirm(prompt: str) -> bool:
    print(prompt, end="", flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() == "yes"


def cmd_restore(args: argparse.Namespace) -> int:
    """Validate the backup, make sure nothing uses system.db, confirm, keep the current file, restore."""
    # Imported here: other commands start without them.
    from app.storage.backup import BackupError, backup_mode, check_backup, restore_backup

    settings, paths = paths_for(args)
    backup = args.backup.expanduser()
    if not backup.is_file():
        raise CommandError(f"no backup file at {backup}")
    if paths.system_db.exists() and backup.resolve() == paths.system_db.resolve():
        raise CommandError("that is the current system.db itself: give a file from the backups folder")
    recorded = backup_mode(backup)  # the copy's own word wins over the folder it sits in
    if recorded in MODES:
        other = recorded if recorded != settings.mode else None
    else:
        other = _other_mode(backup, paths)
    if other:
        flag = " (add --sim)" if other == "sim" else ""
        raise CommandError(f"{backup} is a {other.upper()} backup but this would restore the "
                           f"{settings.mode.upper()} system.db{flag}; records of the modes never mix")
    try:
        summary = check_backup(backup)
    except BackupError as exc:
        raise CommandError(f"cannot restore: {exc}") from None
    busy = kiosk_activity(paths, settings.mode)
    if busy:
        raise CommandError(f"stop the kiosk first: {busy}")
    taken = datetime.fromtimestamp(backup.stat().st_mtime, timezone.utc)
    print(f"backup    {backup} (written {utc_text(taken)})")
    print(f"          {summary.instances} card(s), {summary.running} running, {summary.transactions} "
          f"transaction(s), {summary.orders} order(s)")
    print(f"replaces  {paths.system_db} ({settings.mode.upper()})")
    print("          trades recorded after the backup will be missing from the cards "
          "(the broker keeps them)")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("restore needs a confirmation: run it in a terminal, or add --yes")
        if not _confirm("Type 'yes' to replace system.db: "):
            print("nothing changed")
            return EXIT_FAILED
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    from app.engine.system.folder_lock import FolderLock, FolderLocked
    try:
        # Held while the file is swapped: a kiosk starting meanwhile waits for it, then refuses to start.
        with FolderLock(paths.root).acquire(patience_s=0):
            kept = restore_backup(backup, paths.system_db, stamp)
    except FolderLocked as exc:
        raise CommandError(f"stop the kiosk first: {exc}") from None
    except (BackupError, OSError) as exc:
        raise CommandError(f"restore failed: {exc}") from None
    print(f"restored  {paths.system_db} from {backup.name}")
    if kept:
        print(f"kept      the previous file as {kept}")
    return EXIT_OK
