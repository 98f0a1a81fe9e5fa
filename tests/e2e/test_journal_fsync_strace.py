"""The journal row of an order reaches the disk (fsync) before the order leaves: checked with strace."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The child journals one order the way OrderJournal.place does, then "sends" it: a stat of a marker
# path stands in for the HTTP request (a syscall that shows in the trace at the moment of sending).
CHILD = r"""
import os, sys
sys.path.insert(0, {root!r})
from app.storage.system_store import SystemStore
class Store(SystemStore):
    SYNCHRONOUS = {level!r}
store = Store({db!r})
iid = store.create_instance("AAPL", "buy_and_hold", 10000.0)
store.journal_order("coid-1", iid, "AAPL", "buy", 1, "2024-06-03T14:30:00Z")
os.path.exists("/autotrader-order-sent-marker")
"""


def _trace(tmp_path: Path, level: str) -> list[str]:
    db = tmp_path / level / "system.db"
    db.parent.mkdir()
    script = tmp_path / f"child_{level}.py"
    script.write_text(CHILD.format(root=str(ROOT), level=level, db=str(db)))
    out = tmp_path / f"trace_{level}.txt"
    subprocess.run(["strace", "-f", "-e", "trace=openat,pwrite64,write,fsync,fdatasync,newfstatat,stat",
                    "-o", str(out), sys.executable, str(script)], check=True, timeout=120)
    return out.read_text().splitlines()


def _syncs_between_journal_and_send(lines: list[str]) -> list[str]:
    wal_fd = None
    for line in lines:
        match = re.search(r'openat\(.*system\.db-wal".*= (\d+)$', line)
        if match:
            wal_fd = match.group(1)
    assert wal_fd is not None, "the child never opened system.db-wal"
    sent = next(i for i, line in enumerate(lines) if "autotrader-order-sent-marker" in line)
    last_write = max(i for i, line in enumerate(lines[:sent]) if re.search(rf"pwrite64\({wal_fd},", line))
    return [line for line in lines[last_write:sent] if re.search(rf"f(data)?sync\({wal_fd}\)", line)]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt-get install strace)")
def test_the_journal_row_is_fsynced_before_the_order_is_sent(tmp_path):
    probe = subprocess.run(["strace", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode().strip()[:120]}")
    assert _syncs_between_journal_and_send(_trace(tmp_path, "FULL")), "no fsync of the WAL before sending"
    # The same write with synchronous=NORMAL reaches the WAL without a sync: what a power cut loses.
    assert _syncs_between_journal_and_send(_trace(tmp_path, "NORMAL")) == []
