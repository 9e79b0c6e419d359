"""Run statistics as the job pages and the `history` command both show them.

Percentiles are taken in Python, not in SQL, because percentile functions differ across SQLite,
PostgreSQL and MariaDB; nearest-rank, so a p95 is always a duration that was actually observed.
"""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values``: always a duration that was observed."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]
