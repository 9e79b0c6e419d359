"""Job functions for the process pool test: importable by name in a spawned child."""

from __future__ import annotations

import time


def nap(seconds: float) -> float:
    """Sleep; return the time it really took, as the job itself measured it."""
    began = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - began


def explode(message: str) -> None:
    raise RuntimeError(message)
