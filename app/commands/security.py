"""``autotrader set-pin``: change the kiosk PIN from a trusted shell."""

from __future__ import annotations

import argparse
import getpass
import sys

from app.commands.common import EXIT_OK, CommandError, paths_for
from app.engine.system.data_folder import open_system_store


def register(sub: argparse._SubParsersAction) -> None:
    """Add set-pin to the parser."""
    p = sub.add_parser("set-pin", help="change the kiosk PIN (asks twice, 4-8 digits)")
    p.add_argument("--sim", action="store_true", help="change the simulated market's PIN")
    p.set_defaults(func=cmd_set_pin)


def _ask(prompt: str) -> str:
    # Without a terminal (a script, a test) read plain lines; never echo the digits.
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        raise CommandError("no PIN given on standard input")
    return line.strip()


def cmd_set_pin(args: argparse.Namespace) -> int:
    """Ask for the new PIN twice and store its salted hash."""
    from app.engine.system.pin import PinError, PinGuard  # here: other commands start without it

    _, paths = paths_for(args)
    first = _ask("New PIN (4-8 digits): ")
    second = _ask("Repeat the new PIN: ")
    if first != second:
        raise CommandError("the two PINs differ: nothing changed")
    with open_system_store(paths) as store:
        try:
            PinGuard(store).change(first)
        except PinError as exc:
            raise CommandError(str(exc)) from None
    print("PIN changed")
    return EXIT_OK
