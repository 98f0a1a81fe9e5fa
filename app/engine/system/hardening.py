"""Start-up safety checks that warn rather than refuse: a ``.env`` holding the Alpaca keys must not
be readable by other users of the machine (a Raspberry Pi often has a shared ``pi`` account, a
desktop session and services running under other users)."""

from __future__ import annotations

import logging
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from app.engine.system.settings import default_dotenv_files

log = logging.getLogger("autotrader.engine.hardening")

_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH


def exposed_env_files(files: Iterable[Path] | None = None) -> list[Path]:
    """The given ``.env`` files (default: the ones settings read) that exist and that group or
    others may read. Files that cannot be inspected are skipped: there is nothing to warn about."""
    exposed: list[Path] = []
    for path in default_dotenv_files() if files is None else files:
        path = Path(path)
        try:
            info = path.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mode & _OTHERS_READ:
            exposed.append(path)
    return exposed


def _logged_to(stream: TextIO) -> bool:
    """True when this module's log records already reach ``stream`` (then one line there is enough)."""
    logger: logging.Logger | None = log
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is stream \
                    and handler.level <= logging.WARNING:
                return True
        logger = logger.parent if logger.propagate else None
    return False


def warn_exposed_env_files(files: Iterable[Path] | None = None, *, stream: TextIO | None = None) -> list[Path]:
    """Log a WARNING and print one line on stderr per exposed ``.env`` file, naming the fix.

    The plain line is left out when the log already goes to that stream, so it is never said twice.

    Returns the exposed files (empty when all is well). Never raises and never reads the file's
    content, so no key can end up in the message.
    """
    out = sys.stderr if stream is None else stream
    exposed = exposed_env_files(files)
    echo = not _logged_to(out)
    for path in exposed:
        message = (f"{path} is readable by other users of this machine and can hold the Alpaca keys; "
                   f"fix it with: chmod 600 {path}")
        log.warning("%s", message)
        if not echo:
            continue
        try:
            print(f"autotrader: warning: {message}", file=out, flush=True)
        except (OSError, ValueError):  # no usable stderr (a detached autostart): the log has it
            pass
    return exposed
