"""One row of the history table, validated: what the history source applies and counts.

Rows come from other writers too (Aegis, hand-made SQL), so anything odd is refused with a short
reason that becomes a label of ``jobstore_exporter_history_invalid_rows_total`` rather than an
exception that would fail the whole poll.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exporter.shared.tables import FINISHED_STATUSES, JOB_STATUSES, as_utc

FINISHED = FINISHED_STATUSES
STATUSES = frozenset(JOB_STATUSES)
MAX_DURATION = 366 * 86400.0  # longer than a year is not a duration, it is a corrupt row


@dataclass(slots=True)
class Run:
    id: int
    job_id: str
    status: str
    scheduled: float | None
    started: float | None
    finished: float | None
    duration: float | None  # seconds
    error: str | None


class InvalidRow(ValueError):
    """A history row we cannot use; its reason becomes a label of the invalid-rows counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- parsing ------------------------------------------------------------------------------


def int_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_row(row: Iterable[Any]) -> Run:
    """Validate one raw row; anything odd raises InvalidRow with a short reason."""
    row_id, job_id, scheduled, started, finished, duration_ms, status, error = row
    if int_id(row_id) is None:
        raise InvalidRow("non-integer id")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidRow("missing job_id")
    if status not in STATUSES:
        raise InvalidRow("unknown status")
    duration = None
    if duration_ms is not None:
        try:
            duration = float(duration_ms) / 1000.0
        except (TypeError, ValueError):
            raise InvalidRow("non-numeric duration") from None
        if not 0 <= duration <= MAX_DURATION or math.isnan(duration):
            raise InvalidRow("absurd duration")
    started_at = _timestamp(started)
    finished_at = _timestamp(finished)
    if duration is None and started_at is not None and finished_at is not None:
        duration = max(0.0, finished_at - started_at)
    return Run(
        id=row_id,
        job_id=job_id,
        status=status,
        scheduled=_timestamp(scheduled),
        started=started_at,
        finished=finished_at,
        duration=duration,
        error=str(error)[:200] if error is not None else None,
    )


def _timestamp(value: Any) -> float | None:
    """Unix seconds of a timestamp column; an unreadable one makes the row invalid."""
    if value is None:
        return None
    moment = as_utc(value)
    if moment is None:
        raise InvalidRow("unparseable timestamp")
    return moment.timestamp()
