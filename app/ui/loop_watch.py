"""Measures how long the UI thread's event loop goes without running: its longest stall.

A precise timer asks to run every millisecond; the longest gap between two of its runs is the
longest time anything on the UI thread kept the loop from turning (a touch, a repaint or a
signal waited that long). Used by ``bench/bench_ui_stalls.py`` and the UI stall tests.

``share_the_interpreter`` is what the kiosk does so that the engine thread cannot hold that loop up.
"""

from __future__ import annotations

import sys
import time

from PySide6.QtCore import QObject, Qt, QTimer


UI_SWITCH_INTERVAL_S = 0.001


def share_the_interpreter() -> None:
    """Let a thread that wants the interpreter lock have it after 1 ms instead of Python's 5 ms.

    Every paint and slot of the UI thread is Python code that must take the lock back from whichever
    thread holds it (the engine's minute, a backtest job reading its result); with the default each
    take can wait 5 ms, so a frame of twenty label paints could wait 100 ms behind a busy engine."""
    sys.setswitchinterval(UI_SWITCH_INTERVAL_S)


class LoopWatch(QObject):
    """Records the longest gap between ticks of a 1 ms timer while started."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(1)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0
        self.longest_ms = 0.0
        self.ticks = 0

    def start(self) -> None:
        """Start measuring from now (the longest gap starts at zero)."""
        self.longest_ms = 0.0
        self.ticks = 0
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> float:
        """Stop, counting the gap up to now; returns the longest gap in milliseconds."""
        self._tick()
        self._timer.stop()
        return self.longest_ms

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest_ms = max(self.longest_ms, (now - self._last) * 1000)
        self._last = now
        self.ticks += 1
