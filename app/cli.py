"""The ``autotrader`` command line (also ``python -m app``)."""

from __future__ import annotations

import argparse
import os
import select
import sqlite3
import sys
from collections.abc import Sequence

from app import __version__
from app.commands import admin, autostart, backfill, backtest, data, doctor, kiosk, restore, security
from app.commands.common import EXIT_OK, EXIT_USAGE, CommandError, data_folder_failure, fail
from app.storage.errors import StorageUnavailable

COMMAND_GROUPS = [kiosk, autostart, admin, backtest, data, backfill, restore, security, doctor]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, one sub-command per action."""
    parser = argparse.ArgumentParser(prog="autotrader", description=__doc__)
    parser.add_argument("--version", action="version", version=f"autotrader {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (2 for anything the person must fix)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # some other pipe or socket: a real error
        return _quiet_after_closed_pipe()
    except (sqlite3.Error, OSError, StorageUnavailable) as exc:
        # A read-only, missing, full or damaged data folder is one sentence; anything else is a bug.
        sentence = data_folder_failure(args, exc)
        if sentence is None:
            raise
        return fail(sentence)


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reading end is closed (``autotrader bars X | head``)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _quiet_after_closed_pipe() -> int:
    """The reader has what it wanted: end quietly. Python would report the lost pipe again when it
    flushes stdout at exit, so stdout now points at /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
