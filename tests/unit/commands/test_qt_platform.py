"""Start-up checks without processes: display variables, ``ldd`` output captured on a fresh Debian,
package names (issue 14 item 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.commands import qt_platform
from app.commands.qt_platform import DisplayError, check_display, package_for, parse_ldd

DATA = Path(__file__).resolve().parent / "data"


def test_offscreen_platform_needs_no_display():
    assert "no display needed" in check_display({"QT_QPA_PLATFORM": "offscreen"})
    with pytest.raises(DisplayError, match="DISPLAY.*WAYLAND_DISPLAY"):
        check_display({})


def test_parse_captured_ldd_output_of_a_fresh_debian():
    """Real ``ldd libqxcb.so`` output captured on this machine before the two packages were installed."""
    missing = parse_ldd((DATA / "ldd-libqxcb-missing.txt").read_text())
    assert missing == ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")  # each listed twice, reported once
    check = qt_platform.LibraryCheck("xcb", None, missing)
    assert check.install_line == "sudo apt install libxcb-icccm4 libxcb-keysyms1"
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1 are missing" in check.sentence()


def test_captured_qt_abort_is_what_we_replace():
    """What Qt printed on that machine: it blames xcb-cursor0, which was installed."""
    abort = (DATA / "qt-abort-no-display.txt").read_text()
    assert "xcb-cursor0" in abort
    assert "libxcb-cursor.so.0 => /" in (DATA / "ldd-libqxcb-missing.txt").read_text()


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"), ("libEGL.so.1", "libegl1"),
    ("libQt6Gui.so.6", "libqt6gui6"), ("libfoo-2.so.0", "libfoo-2-0")])
def test_package_names(soname, package):
    assert package_for(soname) == package


def test_one_library_list_serves_the_check_and_both_scripts():
    """resources/qt-system-libraries.txt: the start-up check's names, and on trixie the renamed packages."""
    import subprocess

    from app.commands.qt_platform import LIBRARY_LIST, read_library_packages

    text = LIBRARY_LIST.read_text()
    bookworm, trixie = read_library_packages(text, "bookworm"), read_library_packages(text, "trixie")
    assert bookworm["libglib-2.0.so.0"] == "libglib2.0-0" and trixie["libglib-2.0.so.0"] == "libglib2.0-0t64"
    assert bookworm["libxcb-cursor.so.0"] == trixie["libxcb-cursor.so.0"] == "libxcb-cursor0"
    assert read_library_packages("# comment\nlibfoo.so.1  libfoo1  # why\n\n") == {"libfoo.so.1": "libfoo1"}
    root = Path(__file__).resolve().parents[3]
    printed = subprocess.run(["bash", str(root / "scripts" / "install-pi.sh"), "--print-packages"],
                             capture_output=True, text=True, timeout=60)
    if printed.returncode != 0:
        pytest.skip(f"install-pi.sh does not run here: {printed.stderr.strip()[:200]}")
    listed = set(printed.stdout.split())
    codename = next((line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                     if line.startswith("VERSION_CODENAME=")), None)
    assert set(read_library_packages(text, codename).values()) <= listed
