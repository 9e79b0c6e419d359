"""Helpers for the kit's tests: waiting on conditions, an independent event count, table reads."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
import support
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
)
from apscheduler.schedulers.base import BaseScheduler

from exporter.shared.tables import heartbeat_table, history_table

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    return support.wait_for(condition, timeout, what, interval=interval)


class EventCounter:
    """What APScheduler itself reports, counted by an ordinary listener."""

    MASK = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES

    def __init__(self, scheduler: BaseScheduler) -> None:
        self.counts: Counter[str] = Counter()
        self.per_job: Counter[tuple[str, str]] = Counter()
        self.retvals: dict[str, list[Any]] = {}  # job id -> return values of successful runs
        self._lock = threading.Lock()
        scheduler.add_listener(self, self.MASK)

    def __call__(self, event: Any) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            status, n = "skipped", len(event.scheduled_run_times)
        else:
            status = {
                EVENT_JOB_EXECUTED: "success",
                EVENT_JOB_ERROR: "failed",
                EVENT_JOB_MISSED: "missed",
            }[event.code]
            n = 1
        with self._lock:
            self.counts[status] += n
            self.per_job[(event.job_id, status)] += n
            if status == "success":
                self.retvals.setdefault(event.job_id, []).append(event.retval)

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


def history(
    engine: sa.Engine, *, table: str = "job_execution", schema: str | None = None
) -> list[dict[str, Any]]:
    """The history rows in id order ([] while the recorder has not created the table yet)."""
    t = history_table(sa.MetaData(), table, schema)
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(table, schema=schema):
            return []
        return [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.id))]


def heartbeats(
    engine: sa.Engine, *, table: str = "scheduler_heartbeat", schema: str | None = None
) -> list[dict[str, Any]]:
    t = heartbeat_table(sa.MetaData(), table, schema)
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(table, schema=schema):
            return []
        return [dict(r._mapping) for r in conn.execute(sa.select(t))]


def status_counts(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["status"] for r in rows)


def per_job_counts(rows: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((r["job_id"], r["status"]) for r in rows)
