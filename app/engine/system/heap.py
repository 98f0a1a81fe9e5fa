"""Python's cyclic garbage collector after start-up.

Everything built at start (modules, the calendar, the catalogue, the stores, the first cards)
lives until the process ends. Moving it out of the collector's reach with ``gc.freeze()`` means
a full collection no longer walks it: that walk stops every thread, the UI's included.
"""

from __future__ import annotations

import gc


def settle_after_start() -> None:
    """Collect start-up's garbage once, then freeze what is left so full collections skip it."""
    gc.collect()
    gc.freeze()
