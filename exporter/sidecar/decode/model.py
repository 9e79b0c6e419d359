"""The decoded job, the error for a row that cannot be decoded, and the decoder's limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from apscheduler.triggers.base import BaseTrigger

try:  # APScheduler 3.11+ only; 3.10 writers never store it.
    from apscheduler.triggers.calendarinterval import (
        CalendarIntervalTrigger as _CalendarIntervalTrigger,
    )
except ImportError:  # pragma: no cover - depends on the installed APScheduler
    _CalendarIntervalTrigger = None

#: Real job states are a few kilobytes; anything this large is not worth the memory it costs.
MAX_JOB_STATE_BYTES: Final = 1 << 20

# And/Or triggers nest their children by recursion; real schedules use two or three levels and
# a handful of children. Restoring builds one trigger per child *reference*, and a pickle can
# reference one shared subtree many times (memo), so a 1 KB row can describe 10^8 triggers: the
# bounds below are checked on the pickled state before anything is built.
_MAX_TRIGGER_NESTING: Final = 8  # combined triggers inside each other
_MAX_TRIGGER_CHILDREN: Final = 100  # children of one combined trigger
_MAX_TRIGGER_NODES: Final = 1000  # triggers built for And/Or in one row, leaves included

# Defaults of APScheduler's own ``job_defaults``, used when a field is absent from a row.
_DEFAULT_EXECUTOR: Final = "default"
_DEFAULT_MISFIRE_GRACE_TIME: Final = 1.0
_DEFAULT_COALESCE: Final = True
_DEFAULT_MAX_INSTANCES: Final = 1


@dataclass(frozen=True, slots=True)
class DecodedJob:
    """The parts of a stored job the exporter reports on; the job's code is never imported."""

    id: str
    name: str | None
    func: str | None  # the "module:qualname" text, or None if not a string
    trigger: BaseTrigger | None  # a real apscheduler.triggers.* instance built from the allowlist
    executor: str  # "default" when absent
    misfire_grace_time: float | None  # seconds; None means unlimited
    coalesce: bool
    max_instances: int
    next_run_time: datetime | None  # aware
    placeholders: int  # objects in args/kwargs replaced by inert placeholders


class UndecodableJob(Exception):
    """A ``job_state`` that cannot be decoded safely.

    ``str(exc)`` is one short line saying why. It is written by this module, never copied from
    the payload, so it is safe to log and to show on the status page.
    """

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())[:200] or "undecodable job_state"
        super().__init__(reason)
        self.reason = reason
