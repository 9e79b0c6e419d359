"""Worker threads giving the interpreter lock back to the event loop that serves scrapes.

The event loop lets the lock go at every socket call. A poll or render thread that only
computes takes it then, and the loop, back from its call, waits a whole switch interval to get
it back; under load that happens at each of its next calls, so every scrape in flight while a
poll or render ran was slowed several times over (the p99 of ``/metrics``, measured with
``bench/scrape.py``). Work that runs in slices calls :func:`pause` between two of them: a short
sleep hands the lock back at once, for a little wall time and no CPU.
"""

from __future__ import annotations

import time

PAUSE = 50e-6
"""Seconds a worker sleeps between two slices of its work (Linux wakes it about 50 to 100 µs
later). Measured at 10k jobs under ``wrk`` with a poll every 2 s, pausing between the next-run
deltas' slices: p99 2.58x to 1.92x the floor's on SQLite, 2.54x to 2.30x on PostgreSQL, about
2 ms more wall time per clock render."""


def pause() -> None:
    """Give the interpreter lock away for a moment (worker threads only, never the loop)."""
    time.sleep(PAUSE)
