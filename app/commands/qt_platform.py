"""Can Qt open a window here? A display to draw on, and the system libraries its platform plugin needs.

Without either, Qt aborts the process (exit 134) with a message that names the wrong cause
("xcb-cursor0 is needed" even when there is no display at all). These checks run before Qt is
touched, so the kiosk and ``autotrader doctor`` can say what is wrong in one sentence.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

# Platforms that need no display server.
HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb", "eglfs", "vkkhrdisplay", "minimalegl")
PLUGIN_FILES = {"xcb": ("libqxcb.so",), "wayland": ("libqwayland.so", "libqwayland-generic.so")}

# The libraries Qt's xcb and wayland plugins load and their Debian / Raspberry Pi OS packages: one
# list, resources/qt-system-libraries.txt, which the install and CI scripts read too.
LIBRARY_LIST = files("app") / "resources" / "qt-system-libraries.txt"


def read_library_packages(text: str, codename: str | None = None) -> dict[str, str]:
    """soname → package from the list's text; ``codename`` "trixie" takes the renamed packages."""
    packages = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            packages[fields[0]] = fields[2] if codename == "trixie" and len(fields) > 2 else fields[1]
    return packages


def _os_codename() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return None


# Anything not in the list falls back to Debian's naming rule (libfoo.so.1 → libfoo1, libfoo-2.so.0 → libfoo-2-0).
PACKAGES = read_library_packages(LIBRARY_LIST.read_text(), _os_codename())
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


class DisplayError(Exception):
    """No display to open a window on (the message is one sentence naming the variables)."""


@dataclass(frozen=True)
class LibraryCheck:
    """The platform plugin checked and the libraries it could not find (empty: all there)."""

    platform: str
    plugin: Path | None
    missing: tuple[str, ...]
    error: str | None = None  # the check itself could not run

    @property
    def packages(self) -> tuple[str, ...]:
        """The packages providing the missing libraries, in order, without repeats."""
        return tuple(dict.fromkeys(package_for(lib) for lib in self.missing))

    @property
    def install_line(self) -> str:
        """``sudo apt install …`` for the missing libraries ("" when none are missing)."""
        return f"sudo apt install {' '.join(self.packages)}" if self.missing else ""

    def sentence(self) -> str:
        """What is missing and how to install it, in one sentence."""
        return (f"Qt's {self.platform} platform plugin cannot load: {', '.join(self.missing)} "
                f"{'is' if len(self.missing) == 1 else 'are'} missing; install with: {self.install_line}")


def package_for(soname: str) -> str:
    """The Debian package that ships the shared library ``soname``."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    match = re.fullmatch(r"(lib.+?)\.so\.(\d+).*", soname)
    if not match:
        return soname
    name, version = match.group(1).lower(), match.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def parse_ldd(output: str) -> tuple[str, ...]:
    """The libraries ``ldd`` reports as "not found", in order, without repeats."""
    found = (m.group(1) for m in map(_NOT_FOUND.match, output.splitlines()) if m)
    return tuple(dict.fromkeys(found))


def platform_for(env: Mapping[str, str]) -> str:
    """The Qt platform a window would use: QT_QPA_PLATFORM, else wayland in a Wayland session, else xcb."""
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return "wayland" if chosen.startswith("wayland") else chosen
    return "wayland" if env.get("WAYLAND_DISPLAY") else "xcb"


def _x_socket_reachable(display: str) -> bool | None:
    """Whether a local X server listens for ``display`` (None: a remote display, not checked)."""
    match = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display.strip())
    if not match:
        return None
    path = f"/tmp/.X11-unix/X{match.group(1)}"
    for address in (path, "\0" + path):  # the filesystem socket, then Linux's abstract one
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            try:
                sock.connect(address)
                return True
            except OSError:
                continue
    return False


def check_display(env: Mapping[str, str] | None = None) -> str:
    """The display the kiosk will draw on (e.g. "X11 display :0"); DisplayError when there is none."""
    env = os.environ if env is None else env
    platform = platform_for(env)
    if platform in HEADLESS_PLATFORMS:
        return f"Qt platform {platform} (no display needed)"
    if platform == "wayland":
        name = env.get("WAYLAND_DISPLAY", "")
        if not name:
            raise DisplayError("no display: QT_QPA_PLATFORM asks for wayland but WAYLAND_DISPLAY is not set; "
                               "start the kiosk inside the desktop session")
        runtime = env.get("XDG_RUNTIME_DIR", "")
        socket_path = Path(name) if name.startswith("/") else Path(runtime) / name
        if not socket_path.exists():
            raise DisplayError(f"no display: WAYLAND_DISPLAY={name} but there is no compositor socket at "
                               f"{socket_path}; start the kiosk inside the desktop session")
        return f"Wayland display {name}"
    display = env.get("DISPLAY", "")
    if not display:
        raise DisplayError("no display: neither DISPLAY nor WAYLAND_DISPLAY is set; start the kiosk inside "
                           "the desktop session (or set DISPLAY=:0), or use --headless")
    if _x_socket_reachable(display) is False:
        raise DisplayError(f"no display: DISPLAY={display} but no X server is running there; start the kiosk "
                           "inside the desktop session, or use --headless")
    return f"X11 display {display}"


def plugin_path(platform: str) -> Path | None:
    """The platform plugin file inside the installed PySide6 (None if PySide6 or the plugin is absent)."""
    try:
        import PySide6
    except ImportError:
        return None
    folder = Path(PySide6.__file__).resolve().parent / "Qt" / "plugins" / "platforms"
    for name in PLUGIN_FILES.get(platform, (f"libq{platform}.so",)):
        if (folder / name).is_file():
            return folder / name
    return None


def check_libraries(platform: str = "xcb") -> LibraryCheck:
    """Run ``ldd`` on the platform plugin and list the shared libraries it cannot find."""
    plugin = plugin_path(platform)
    if plugin is None:
        return LibraryCheck(platform, None, (), f"no {platform} platform plugin in the installed PySide6")
    ldd = shutil.which("ldd")
    if ldd is None:
        return LibraryCheck(platform, plugin, (), "ldd is not installed (package libc-bin)")
    try:
        done = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return LibraryCheck(platform, plugin, (), f"ldd failed: {exc}")
    return LibraryCheck(platform, plugin, parse_ldd(done.stdout))


def window_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why Qt could not open a window here, as one sentence, or None when it can."""
    env = os.environ if env is None else env
    try:
        check_display(env)
    except DisplayError as exc:
        return str(exc)
    platform = platform_for(env)
    if platform not in PLUGIN_FILES:
        return None
    libraries = check_libraries(platform)
    return libraries.sentence() if libraries.missing else None
