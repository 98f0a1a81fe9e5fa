"""The ``autotrader`` command line (also ``python -m app``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import __version__
from app.commands import admin, autostart, backfill, backtest, data, doctor, kiosk, restore, security
from app.commands.common import EXIT_USAGE, CommandError, fail

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


if __name__ == "__main__":
    sys.exit(main())
