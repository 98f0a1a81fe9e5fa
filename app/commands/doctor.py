"""``autotrader doctor``: is this machine ready to run the kiosk?"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile

from app.commands.common import EXIT_FAILED, EXIT_OK, settings_for
from app.engine.system.data_folder import data_paths
from app.storage.sqlite import connect, integrity_ok


def register(sub: argparse._SubParsersAction) -> None:
    """Add doctor to the parser."""
    p = sub.add_parser("doctor", help="check versions, data folder, keys and databases")
    p.add_argument("--sim", action="store_true", help="check the simulated market's data folder")
    p.set_defaults(func=cmd_doctor)


def _line(ok: bool, what: str, detail: str, *, note: bool = False) -> bool:
    """Print one check; a ``note`` is shown as ``[--]`` and never fails the run."""
    print(f"[{'--' if note else 'ok' if ok else 'FAIL'}] {what}: {detail}")
    return ok or note


def _window_checks() -> list[bool]:
    """The display of this shell (a note: doctor often runs over SSH) and the Qt plugins' libraries."""
    from app.commands.qt_platform import DisplayError, check_display, check_libraries, platform_for

    results = []
    try:
        results.append(_line(True, "display", check_display()))
    except DisplayError as exc:
        results.append(_line(False, "display", f"{exc} (fine over SSH: the kiosk runs in the desktop session)",
                             note=True))
    platform = platform_for(os.environ)
    platforms = ["xcb"] + (["wayland"] if platform == "wayland" else [])
    for name in platforms:
        check = check_libraries(name)
        what = f"Qt {name} libraries"
        if check.error or check.plugin is None:
            results.append(_line(False, what, check.error or "no platform plugin"))
        elif check.missing:
            results.append(_line(False, what, check.sentence()))
        else:
            results.append(_line(True, what, f"all found ({check.plugin.name})"))
    return results


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print one line per check; exit 1 if any failed."""
    import platform  # here: other commands start without it

    results = [_line(True, "python", platform.python_version())]
    try:
        import PySide6
        from PySide6 import QtCore
        results.append(_line(True, "PySide6", f"{PySide6.__version__} (Qt {QtCore.qVersion()})"))
    except ImportError as exc:
        results.append(_line(False, "PySide6", f"cannot import: {exc}"))
    try:
        from app.engine.alpaca.sdk import AlpacaSdkMismatch, check_sdk
        try:
            results.append(_line(True, "alpaca-py", f"{check_sdk()} (every private member it needs is there)"))
        except AlpacaSdkMismatch as exc:
            results.append(_line(False, "alpaca-py", str(exc)))
    except ImportError as exc:
        results.append(_line(False, "alpaca-py", f"cannot import: {exc}"))
    results += _window_checks()
    settings = settings_for(args)
    if settings.mode == "sim":
        results.append(_line(True, "mode", "SIM (no Alpaca keys configured)"))
    else:
        results.append(_line(True, "mode", f"{settings.mode.upper()} with the {settings.feed} feed (keys set)"))
    paths = data_paths(settings)
    try:
        paths.create()
        with tempfile.NamedTemporaryFile(dir=paths.root):
            pass
        results.append(_line(True, "data folder", f"{paths.root} is writable"))
    except OSError as exc:
        results.append(_line(False, "data folder", f"{paths.root}: {exc.strerror}"))
    for db in (paths.system_db, paths.stocks_db):
        if not db.exists():
            results.append(_line(True, db.name, "not created yet"))
            continue
        try:
            conn = connect(db, readonly=True)
            try:
                ok, detail = integrity_ok(conn)
            finally:
                conn.close()
            size = os.path.getsize(db) / 1e6
            results.append(_line(ok, db.name, f"integrity {detail}, {size:.1f} MB"))
        except sqlite3.Error as exc:
            results.append(_line(False, db.name, f"cannot be read: {exc}"))
    return EXIT_OK if all(results) else EXIT_FAILED
