"""Table layouts shared by the scheduler-side kit (which writes them) and the sidecar (which reads).

`job_execution` is the layout Aegis Stack apps already write, so the sidecar serves their tables
unchanged. Our recorder adds a few columns (`run_id`, `host`, `pid`, `scheduler_id`) that the
reader uses when present and does without when absent. Timestamps are naive UTC, as Aegis writes
them. This module imports nothing but SQLAlchemy so both halves can depend on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

JOB_STATUSES = ("running", "success", "failed", "missed", "skipped")
"""`skipped` is ours: a run dropped because max_instances was reached."""
FINISHED_STATUSES = JOB_STATUSES[1:]

HISTORY_COLUMNS = (
    "id",
    "job_id",
    "job_name",
    "scheduled_run_time",
    "started_at",
    "finished_at",
    "duration_ms",
    "status",
    "error_message",
    "traceback",
)
"""The columns every writer of the layout has (Aegis and our recorder): what readers may select."""
RECORDER_COLUMNS = ("run_id", "host", "pid", "scheduler_id")
"""Ours, optional for readers: the recorder's key for updating a row it inserted, and where the
run happened."""

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class _Time(sa.types.TypeDecorator[datetime]):
    """A DATETIME with microseconds on MySQL and MariaDB (their plain DATETIME keeps whole
    seconds; runs need microseconds), the default elsewhere. Chosen per dialect instead of with
    ``with_variant``, which would import SQLAlchemy's MySQL dialect into every process that
    names these tables (about 1 MB resident, in a sidecar reading PostgreSQL or SQLite)."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())


_TIME = _Time()


def history_table(
    metadata: sa.MetaData, name: str = "job_execution", schema: str | None = None
) -> sa.Table:
    """The execution-history table: one row per run, inserted `running`, updated when done."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(191), nullable=False),
        sa.Column("job_name", sa.String(255)),
        sa.Column("scheduled_run_time", _TIME),
        sa.Column("started_at", _TIME),
        sa.Column("finished_at", _TIME),
        sa.Column("duration_ms", sa.Float(53)),  # DOUBLE on MySQL, whose FLOAT is single
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_message", sa.Text()),
        sa.Column("traceback", sa.Text()),
        # Ours, optional for readers: the recorder's key for updating a row it inserted, and
        # where the run happened.
        sa.Column("run_id", sa.String(36), unique=True),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.Column("scheduler_id", sa.String(191)),
        sa.Index(f"ix_{name}_job_id_id", "job_id", "id"),
        sa.Index(f"ix_{name}_status", "status"),
        schema=schema,
        # Without AUTOINCREMENT, SQLite reuses the highest id once that row is deleted, and an
        # incremental reader (WHERE id > last seen) would miss the new row.
        sqlite_autoincrement=True,
    )


def heartbeat_table(
    metadata: sa.MetaData, name: str = "scheduler_heartbeat", schema: str | None = None
) -> sa.Table:
    """One row per scheduler process, upserted every few seconds by the kit."""
    return sa.Table(
        name,
        metadata,
        sa.Column("scheduler_id", sa.String(191), primary_key=True),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer()),
        sa.Column("state", sa.String(16), nullable=False),  # running | paused | stopped
        sa.Column("started_at", _TIME),
        sa.Column("last_seen", _TIME, nullable=False),
        sa.Column("version", sa.String(64)),
        schema=schema,
    )


def as_utc(value: Any) -> datetime | None:
    """A timestamp column's value as an aware UTC datetime; None when absent or unreadable.

    The layouts store naive UTC (as Aegis writes). Drivers hand back datetimes, except SQLite,
    which hands back ISO text; aware values from other writers are respected.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def history_columns(name: str, schema: str | None) -> sa.TableClause:
    """The history table as the sidecar reads it: the shared columns only, never reflected, so
    a table from another writer (or one with extra columns) reads the same."""
    return sa.table(name, *(sa.column(column) for column in HISTORY_COLUMNS), schema=schema)
