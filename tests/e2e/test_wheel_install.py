"""The wheel is the product: built, installed (not editable) into a fresh virtual environment, run.

An editable install reads resources straight from the checkout, so it hides files the package
forgets to ship (the style sheet once did: FileNotFoundError on start).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built without network (setuptools and wheel are test extras)."""
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
    source = out / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(source)], check=True, cwd=out, timeout=600)
    (found,) = out.glob("autotrader-*.whl")
    return found


def test_wheel_ships_the_resources(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "app/resources/kiosk.qss" in names
    assert any(n.startswith("algorithms/") and n.endswith(".py") for n in names)


def test_installed_wheel_renders_a_screenshot(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Dependencies come from the test environment (no network); its editable AutoTrader does not,
    # because a plain path line in a .pth file does not run the editable finder's own .pth.
    Path(purelib, "test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", purelib, str(wheel)], check=True, timeout=300)
    # What pip's console script does; the guard matters: worker processes re-import the main module.
    Path(purelib, "autotrader_entry.py").write_text(
        "from app.cli import main\n\nif __name__ == '__main__':\n    raise SystemExit(main())\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "AUTOTRADER_"))}
    env.update(QT_QPA_PLATFORM="offscreen", AUTOTRADER_DATA_DIR=str(tmp_path / "data"), PYTHONNOUSERSITE="1")
    where = subprocess.run([str(py), "-c", "import app; print(app.__file__)"], cwd=tmp_path, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(env_dir), f"app imported from {where}, not from the installed wheel"

    shot = tmp_path / "shot.png"
    done = subprocess.run([str(py), "-m", "autotrader_entry", "screenshot", "--size", "800x480", str(shot)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5_000  # a rendered kiosk, not an empty image
