"""``install-autostart`` and ``supervise``: the kiosk starts with the desktop and comes back if it dies.

The supervisor is a mode of the CLI rather than a systemd user unit because X autostart already
starts it inside the desktop session, with the display and the person's environment, on any
Raspberry Pi OS image; a user unit would need lingering and the graphical-session target set up.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.commands.common import EXIT_OK, EXIT_QUIT, CommandError

log = logging.getLogger("autotrader.ui.supervisor")

RESTART_DELAY_S = 3.0  # well inside the 10 s promise, slow enough not to spin on a crash loop
FAST_CRASH_S = 30.0  # a child that dies sooner than this counts as crash-looping
MAX_DELAY_S = 9.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add install-autostart and supervise to the parser."""
    p = sub.add_parser("install-autostart", help="start the kiosk with the desktop (XDG autostart)")
    p.add_argument("--dir", type=Path, default=None, help="autostart folder (default ~/.config/autostart)")
    p.set_defaults(func=cmd_install_autostart)

    p = sub.add_parser("supervise", help="run the kiosk and restart it within 10 s whenever it exits")
    p.add_argument("run_args", nargs=argparse.REMAINDER, help="arguments for `autotrader run`")
    p.set_defaults(func=cmd_supervise)


def desktop_entry(executable: Path) -> str:
    """The autostart entry running ``executable supervise``."""
    return ("[Desktop Entry]\nType=Application\nName=AutoTrader\n"
            "Comment=Wall-mounted trading terminal (restarted within 10 s if it dies)\n"
            f"Exec={executable} supervise\nTerminal=false\nX-GNOME-Autostart-enabled=true\n")


def cmd_install_autostart(args: argparse.Namespace) -> int:
    """Write autotrader.desktop with this environment's ``autotrader`` path."""
    folder = args.dir or Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "autostart"
    executable = Path(sys.executable).with_name("autotrader")
    if not executable.exists():
        raise CommandError(f"{executable} not found: install AutoTrader first (./kiosk.sh does)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "autotrader.desktop"
        target.write_text(desktop_entry(executable), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write to {folder}: {exc.strerror}") from None
    print(f"wrote {target}: the kiosk starts with the desktop and restarts within 10 s if it dies")
    return EXIT_OK


def cmd_supervise(args: argparse.Namespace) -> int:
    """Run ``autotrader run`` in a child process forever; restart it a few seconds after it exits."""
    run_args = [a for a in args.run_args if a != "--"]
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay = RESTART_DELAY_S
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "app", "run", *run_args])
        code = child.wait()
        if stopping:
            break
        if code == EXIT_QUIT:
            print("autotrader supervise: the kiosk was quit from its settings; not restarting",
                  file=sys.stderr, flush=True)
            break
        lived = time.monotonic() - started
        delay = min(MAX_DELAY_S, delay * 1.5) if lived < FAST_CRASH_S else RESTART_DELAY_S
        print(f"autotrader supervise: kiosk exited with {code} after {lived:.0f} s; "
              f"restarting in {delay:.0f} s", file=sys.stderr, flush=True)
        time.sleep(delay)
    return EXIT_OK
