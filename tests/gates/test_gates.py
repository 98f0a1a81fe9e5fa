"""The gates CI keeps: lint (ruff), types (mypy on app/), and the import layers (import-linter).

They run as tests so the README's one test command runs them; a deliberate violation (say,
``import sqlite3`` in app/ui) fails the suite here with the tool's own report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("tool", ["ruff", "lint-imports", "mypy"])
def test_gate(tool: str):
    command = {"ruff": (str(BIN / "ruff"), "check", "."),
               "lint-imports": (str(BIN / "lint-imports"), "--no-cache"),
               "mypy": (sys.executable, "-m", "mypy")}[tool]
    done = run_tool(*command)
    assert done.returncode == 0, f"{tool} failed:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
