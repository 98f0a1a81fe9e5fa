"""The flattened XNYS schedule kept in a file, so a process start need not import pandas.

Building the calendar with exchange_calendars costs a process about 1.2 s here (importing pandas
and exchange_calendars, then computing the schedule; 5-10 s on a Pi), and every ``autotrader``
command, every kiosk start and every restart after a power cut pays it for the same few thousand
numbers. They are kept in ``$XDG_CACHE_HOME/autotrader`` (default ``~/.cache/autotrader``) in a
file whose name says everything the schedule depends on: the calendar, its first and last day and
the exchange_calendars version. A new day, an upgrade of exchange_calendars or a damaged file
means one rebuild; a home folder that cannot be written only means no cache.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from datetime import date
from importlib.util import find_spec
from pathlib import Path

log = logging.getLogger("autotrader.engine.calendar")

_FORMAT = 1  # bump when the file's content changes meaning
_PREFIX = "calendar-"
_STALE_TMP_S = 600.0

Schedule = tuple[tuple[date, ...], tuple[int, ...], tuple[int, ...]]  # sessions, opens, closes


def cache_folder() -> Path:
    """Where the schedule files live (``$XDG_CACHE_HOME/autotrader`` or ``~/.cache/autotrader``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autotrader"


def cache_file(name: str, first_day: date, last_day: date) -> Path:
    """The file of one schedule: calendar ``name`` from ``first_day`` to ``last_day``."""
    version = library_version("exchange_calendars")
    return cache_folder() / (f"{_PREFIX}{name}-{first_day.isoformat()}-{last_day.isoformat()}"
                             f"-xc{version}-v{_FORMAT}.json")


def library_version(package: str) -> str:
    """The installed version of ``package`` (a distribution of the same name), or "unknown".

    Read from the name of its ``.dist-info`` folder beside the package, as pip installs it:
    ``importlib.metadata`` would add a fifth of a one-shot command's imports. Other layouts ask it.
    """
    spec = find_spec(package)
    if spec is not None and spec.origin:
        site = Path(spec.origin).parent.parent
        prefix = f"{package}-"
        try:
            names = [n for n in os.listdir(site) if n.startswith(prefix) and n.endswith(".dist-info")]
        except OSError:
            names = []
        if len(names) == 1:
            return names[0][len(prefix):-len(".dist-info")]
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def load(path: Path) -> Schedule | None:
    """The schedule stored in ``path``, or None when there is none or it does not hold together."""
    try:
        with path.open(encoding="utf-8") as f:
            raw = json.load(f)
        sessions = tuple(date.fromisoformat(day) for day in raw["sessions"])
        opens = tuple(int(ts) for ts in raw["opens"])
        closes = tuple(int(ts) for ts in raw["closes"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.info("calendar cache %s unreadable (%s): rebuilding it", path, exc)
        return None
    ordered = all(a < b for a, b in zip(sessions, sessions[1:]))
    if not sessions or not ordered or not len(sessions) == len(opens) == len(closes) \
            or any(o >= c for o, c in zip(opens, closes)):
        log.info("calendar cache %s is inconsistent: rebuilding it", path)
        return None
    return sessions, opens, closes


def save(path: Path, schedule: Schedule) -> None:
    """Write ``schedule`` to ``path`` whole or not at all, and remove the files of older schedules.

    A folder that cannot be written is not an error: the next start builds the schedule again.
    """
    sessions, opens, closes = schedule
    text = json.dumps({"sessions": [d.isoformat() for d in sessions], "opens": list(opens),
                       "closes": list(closes)}, separators=(",", ":"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)  # concurrent starts each write a whole file; the last one stays
        except BaseException:
            os.unlink(tmp)
            raise
        for old in path.parent.glob(f"{_PREFIX}*.json"):
            if old != path:
                old.unlink(missing_ok=True)
        for tmp_left in path.parent.glob(f".{_PREFIX}*.tmp"):  # of a process killed while writing
            if time.time() - tmp_left.stat().st_mtime > _STALE_TMP_S:
                tmp_left.unlink(missing_ok=True)
    except OSError as exc:
        log.info("calendar cache not written to %s: %s", path.parent, exc)
