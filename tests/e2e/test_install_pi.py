"""scripts/install-pi.sh on this machine: a dry run names exactly the missing apt packages and writes
nothing; with everything in place it (and a real run) change nothing; non-Debian systems are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/install-pi.sh"


def _os_release() -> dict[str, str]:
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip('"') for k, _, v in (line.partition("=") for line in lines) if k}


debian_only = pytest.mark.skipif(
    _os_release().get("VERSION_CODENAME") not in ("bookworm", "trixie") or not shutil.which("dpkg-query"),
    reason="install-pi.sh runs on Debian / Raspberry Pi OS bookworm or trixie only")


def _checkout(tmp_path: Path, venv: bool = False) -> Path:
    """A checkout the script can see: its scripts and pyproject.toml (the venv stamp hashes it);
    with ``venv`` this worktree's real .venv linked in, so its stamp and ``autotrader`` are real."""
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "scripts", checkout / "scripts")
    shutil.copytree(REPO / "resources", checkout / "resources")  # the Qt library list the script reads
    shutil.copy2(REPO / "pyproject.toml", checkout / "pyproject.toml")
    if venv:
        (checkout / ".venv").symlink_to(Path(sys.prefix))
    return checkout


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` (links not followed) with its mtime and size."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            found[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_mtime_ns, st.st_size)
    return found


def _run(checkout: Path, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **env}
    return subprocess.run(["bash", str(checkout / SCRIPT), *args], capture_output=True, text=True,
                          env=clean, timeout=120)


def _line(out: str, step: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(step + ":"))


def _not_installed(packages: list[str]) -> list[str]:
    status = {}
    for pkg in packages:
        done = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg], capture_output=True, text=True)
        status[pkg] = done.stdout.strip()
    return [pkg for pkg in packages if status[pkg] != "installed"]


@debian_only
def test_dry_run_names_the_missing_packages_and_writes_nothing(tmp_path: Path):
    checkout = _checkout(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    before = _files(tmp_path)

    done = _run(checkout, home, "--dry-run")

    assert done.returncode == 0, done.stderr
    assert _files(tmp_path) == before, "a dry run wrote files"
    packages = _run(checkout, home, "--print-packages").stdout.split()
    assert {"python3-venv", "libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-image0",
            "libxcb-render-util0", "libxkbcommon-x11-0", "libegl1", "libwayland-client0",
            "libwayland-egl1"} <= set(packages)
    missing = _not_installed(packages)
    system = _line(done.stdout, "system packages")
    if missing:
        assert system.endswith(f"would install {len(missing)}: {' '.join(missing)}")
    else:
        assert system.endswith(f"all {len(packages)} installed")
    assert "would create" in _line(done.stdout, "virtual env")
    assert "would run .venv/bin/autotrader install-autostart" in _line(done.stdout, "autostart")
    assert done.stdout.rstrip().splitlines()[-1].startswith("Dry run:")


@debian_only
def test_nothing_to_do_once_installed(tmp_path: Path):
    checkout = _checkout(tmp_path, venv=True)
    home = tmp_path / "home"
    home.mkdir()
    packages = _run(checkout, home, "--print-packages").stdout.split()
    if _not_installed(packages):
        pytest.skip("this machine lacks some of the apt packages; a real run would install them")
    dry = _run(checkout, home, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would write" in _line(dry.stdout, "autostart")
    assert not (home / ".config").exists()

    first = _run(checkout, home)  # writes the autostart entry only
    assert first.returncode == 0, first.stderr
    entry = home / ".config" / "autostart" / "autotrader.desktop"
    assert f"Exec={Path(sys.prefix) / 'bin' / 'autotrader'} supervise" in entry.read_text()
    assert "up to date" in _line(first.stdout, "virtual env")
    before = _files(tmp_path)

    again = _run(checkout, home)
    dry_again = _run(checkout, home, "--dry-run")

    assert again.returncode == 0 and dry_again.returncode == 0, again.stderr + dry_again.stderr
    assert again.stdout.rstrip().endswith("Nothing changed: AutoTrader was already installed.")
    assert dry_again.stdout.rstrip().endswith("Nothing to do: AutoTrader is installed.")
    assert "up to date" in _line(again.stdout, "autostart")
    assert _files(tmp_path) == before


@pytest.mark.parametrize("release, says", [
    ('ID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40"\n', "Fedora Linux 40, not Raspberry Pi OS or Debian"),
    ('ID=debian\nVERSION_CODENAME=bullseye\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n', "is not supported"),
])
def test_refuses_other_systems_without_touching_anything(tmp_path: Path, release: str, says: str):
    checkout = _checkout(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "os-release").write_text(release)
    before = _files(tmp_path)

    done = _run(checkout, home, AUTOTRADER_OS_RELEASE=str(tmp_path / "os-release"))

    assert done.returncode == 2
    assert says in done.stderr
    assert done.stdout == ""
    assert _files(tmp_path) == before
