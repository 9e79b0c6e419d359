"""Job functions for the process pool test: importable by name in a spawned child."""

from __future__ import annotations

import time


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def explode(message: str) -> None:
    raise RuntimeError(message)
