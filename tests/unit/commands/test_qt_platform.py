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
