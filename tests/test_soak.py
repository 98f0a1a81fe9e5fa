"""The short soak: bench/soak.py for 2 accelerated sessions with 20 cards, asserted.

The real app process on the simulated market with its own data folder, 20 cards on 10 tickers,
two full sessions at 300× (about 80 s each), with the kiosk window (offscreen).

Lateness: at 300× the issue's criterion (a cycle starting more than 1 s of simulated time after its
scheduled instant) is 3.3 ms of real time. That is below what this process controls: one GIL
hand-off between threads (5 ms; the kiosk's UI thread holds the GIL while it repaints cards) or
the OS scheduling a busy 2-vCPU machine. So this short run requires what holds on a loaded machine:
no minute missed or skipped and none later than the catch-up window (5 s real on a fast sim clock);
the count of cycles over 1 s late is reported, not asserted. The full soak (N=30, K=20, windowed at
150×: 1 s = 6.7 ms) reports the strict count.

Memory, descriptors and threads are compared from the end of session 1 to the end: in the first
minutes the algorithm worker threads open their own SQLite connections (stocks.db and system.db,
each with its -wal file), which is warm-up, not growth.
"""

from __future__ import annotations

import pytest

from app.engine.minute.schedule import catch_up_window
from bench.soak import run_soak

pytestmark = pytest.mark.slow

SESSIONS = 2
INSTANCES = 20
SPEED = 300


def test_two_accelerated_sessions_with_20_cards_miss_nothing_and_leak_nothing(tmp_path):
    lines: list[str] = []
    result = run_soak(SESSIONS, INSTANCES, SPEED, tmp_path, lines.append, window="--windowed")
    note = f"\n{result}\n" + "\n".join(lines)

    # The sim starts at the real time of day when the market is open: the first session may be partial.
    assert result["cycles_scheduled"] > (SESSIONS - 1) * 380, note
    assert result["cycles_run"] == result["cycles_scheduled"], note
    assert result["skipped_minutes"] == [] and result["missed"] == 0, note
    # A cycle later than the catch-up window (5 s real: 1500 s simulated at 300x) would have been
    # counted missed above; how many start over 1 s simulated (3.3 ms real) late is a figure here,
    # not a limit: on a busy 2-core machine that is one GIL hand-off.
    assert result["late_max_s"] <= catch_up_window(SPEED).total_seconds(), note
    assert result["errors_logged"] == 0 and result["stderr_tracebacks"] == 0, note
    assert result["exit_code"] == 0, note  # SIGTERM: a clean stop
    # The cards traded, every fill recorded once, the books sound.
    assert result["orders"] > 100 and result["fills"] > 100, note
    assert result["fills_doubled"] == 0 and result["integrity"] == "ok" and result["faults"] == 0, note
    # Flat: descriptors and threads, and memory within 10 % after the first session.
    assert result["fds_end"] - result["fds_session1"] <= 5, note
    assert result["threads_end"] - result["threads_session1"] <= 2, note
    assert result["threads_end"] - result["threads_start"] <= 2, note
    assert result["rss_mb_end"] <= result["rss_mb_session1"] * 1.10, note
    assert result["log_mb"] < 5, note
