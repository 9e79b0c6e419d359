"""The writer thread's periodic chores: heartbeats, crash recovery and retention.

They run on the history writer's thread, between batches of rows, never on the scheduler's
thread or event loop; a chore that fails is logged once (and once when it works again) and never
stops history writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from exporter.kit.engine import describe_error

log = logging.getLogger("exporter.kit")

INACTIVE_RECHECK = 5.0
"""Seconds after which a task that was not active (its scheduler not running) is checked again."""

FAILED_RETRY = 30.0
"""Most seconds before a failed chore is tried again."""


class Task:
    """A chore the writer thread runs every `interval` seconds (never on the scheduler's loop).

    `fn(engine)` returns True when it has more work right away (e.g. another retention batch);
    the writer then calls it again after writing whatever rows arrived meanwhile.
    """

    def __init__(
        self,
        name: str,
        interval: float,
        fn: Callable[[sa.Engine], bool],
        *,
        delay: float = 0.0,
        active: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.fn = fn
        self.active = active  # skipped while this returns False
        self.next_due = time.monotonic() + delay
        self.failing = False
        # Set by `run_soon` while the chore may be running: its next run must not wait for the
        # interval (a `stopped` heartbeat asked for during a `running` beat is still written).
        self.requested = False


def run_due(tasks: Sequence[Task], engine: sa.Engine, describe: str) -> None:
    """Run every task whose time has come (and whose scheduler is running)."""
    for task in tasks:
        if time.monotonic() < task.next_due:
            continue
        if task.active is not None and not task.active():
            task.next_due = time.monotonic() + min(task.interval, INACTIVE_RECHECK)
            continue
        task.requested = False
        try:
            more = task.fn(engine)
        except Exception as exc:  # noqa: BLE001 - a chore never stops history writes
            if not task.failing:
                log.warning("%s failed on %s: %s", task.name, describe, describe_error(exc))
            task.failing = True
            task.next_due = time.monotonic() + min(task.interval, FAILED_RETRY)
            continue
        if task.failing:
            log.info("%s works again", task.name)
            task.failing = False
        task.next_due = time.monotonic() + (0.0 if more or task.requested else task.interval)


def until_next(tasks: Sequence[Task]) -> float:
    """Seconds until the next task is due (at most a minute)."""
    now = time.monotonic()
    due = min((t.next_due for t in tasks), default=now + 60.0)
    return max(0.0, min(due - now, 60.0))
