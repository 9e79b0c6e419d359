"""Scheduler heartbeats: one row per scheduler process, upserted every few seconds.

The writer thread calls `Heartbeat.beat`; the scheduler's own thread or loop never waits for it.
The row says which process (`scheduler_id`, `host`, `pid`), what the scheduler reports
(`running`, `paused`, `stopped`), since when, and `last_seen` (naive UTC). The sidecar turns it
into `apscheduler_scheduler_last_heartbeat_timestamp_seconds` and `apscheduler_scheduler_running`;
the recorder uses it to tell a dead scheduler's unfinished runs from a live one's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING, BaseScheduler

log = logging.getLogger("exporter.kit")

_STATES = {STATE_RUNNING: "running", STATE_PAUSED: "paused"}


def utcnow() -> datetime:
    """Now as naive UTC, the way the history and heartbeat tables store time."""
    return datetime.now(UTC).replace(tzinfo=None)


def scheduler_state(scheduler: BaseScheduler) -> str:
    return _STATES.get(scheduler.state, "stopped")


class Heartbeat:
    """The heartbeat row of one scheduler.

    Nothing is written before the scheduler starts; `stopped` is written once when it shuts
    down (or the process exits), after which beats pause until it is started again.
    """

    def __init__(
        self,
        scheduler: BaseScheduler,
        table: sa.Table,
        *,
        scheduler_id: str,
        host: str,
        pid: int,
        version: str,
    ) -> None:
        self.scheduler = scheduler
        self.table = table
        self.scheduler_id = scheduler_id
        self.host = host
        self.pid = pid
        self.version = version[:64]
        self.started_at: datetime | None = None
        self.final_requested = False
        self._stopped_written = False

    def scheduler_started(self) -> None:
        self.started_at = utcnow()
        self.final_requested = False
        self._stopped_written = False

    def beat(self, engine: sa.Engine) -> bool:
        """Upsert the row now (a writer `Task`). After `final_requested` it reports `stopped`."""
        if self.started_at is None:
            return False
        state = "stopped" if self.final_requested else scheduler_state(self.scheduler)
        if state == "stopped" and self._stopped_written:
            return False
        values = {
            "scheduler_id": self.scheduler_id,
            "host": self.host,
            "pid": self.pid,
            "state": state,
            "started_at": self.started_at,
            "last_seen": utcnow(),
            "version": self.version,
        }
        with engine.begin() as conn:
            upsert(conn, self.table, values, key="scheduler_id")
        self._stopped_written = state == "stopped"
        return False


def upsert(conn: sa.Connection, table: sa.Table, values: dict[str, Any], *, key: str) -> None:
    """INSERT or UPDATE one row by primary key, in one statement on SQLite/PostgreSQL/MariaDB."""
    name = conn.dialect.name
    changes = [c for c in values if c != key]
    if name in ("postgresql", "sqlite"):
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table).values(values)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[key]], set_={c: stmt.excluded[c] for c in changes}
        )
        conn.execute(stmt)
    elif name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table).values(values)
        conn.execute(stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in changes}))
    else:  # any other backend: update, else insert (a racing insert is retried as an update)
        update = (
            table.update()
            .where(table.c[key] == values[key])
            .values({c: values[c] for c in changes})
        )
        if conn.execute(update).rowcount:
            return
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(values))
        except sa.exc.IntegrityError:
            conn.execute(update)
