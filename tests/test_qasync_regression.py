"""PySide6 6.12.0 on Python < 3.12 leaks a reference to None per QObject.killTimer, and qasync calls
killTimer for every callback: the interpreter aborts with ``none_dealloc`` within seconds.

This runs a busy qasync loop in a child process (an abort must not take pytest down with it) and
checks that the process survives and that ``sys.getrefcount(None)`` did not fall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from PySide6.QtWidgets import QApplication
    import qasync

    app = QApplication.instance() or QApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    CALLBACKS = 50_000

    async def churn():
        for i in range(CALLBACKS):
            await asyncio.sleep(0)
        return CALLBACKS

    before = sys.getrefcount(None)
    with loop:
        done = loop.run_until_complete(churn())
    after = sys.getrefcount(None)
    print(json.dumps({"callbacks": done, "before": before, "after": after}))
    """
)


def test_busy_qasync_loop_keeps_none_alive():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, f"child died ({proc.returncode}): {proc.stderr[-2000:]}"
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["callbacks"] == 50_000
    # On Python >= 3.12 None is immortal and its refcount is a huge constant; either way a
    # leaking decref would make it fall.
    assert figures["after"] >= figures["before"], figures
