"""Running the real ``autotrader`` command line in a child process with its own data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KEY_VARS = ("ALPACA_API_KEY", "ALPACA_SECRET", "ALPACA_PAPER", "ALPACA_FEED", "ALPACA_TRADING_URL",
            "ALPACA_DATA_URL", "ALPACA_STREAM_URL", "AUTOTRADER_ALGORITHM_DIRS")


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a sim-mode child: no Alpaca settings, data in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env["AUTOTRADER_DATA_DIR"] = str(data_dir)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.update(extra)
    return env


def run_cli(data_dir: Path, *args: str, stdin: str | None = None, cwd: Path | None = None,
            timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
    """``python -m app ARGS`` in a clean working directory (no stray .env is read)."""
    return subprocess.run([sys.executable, "-m", "app", *args], input=stdin, capture_output=True, text=True,
                          env=cli_env(data_dir, **extra), cwd=cwd or data_dir, timeout=timeout)
