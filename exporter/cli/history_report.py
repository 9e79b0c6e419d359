"""`jobstore-exporter history`: past executions and per-job statistics from the history table.

The query is read-only through the same engines as the sidecar, filtered in SQL (job, status,
time window) so it stays quick on large tables; statistics are computed over the rows of the
window in Python because percentile functions differ across SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from rich.text import Text

from exporter.shared.tables import JOB_STATUSES, as_utc, history_columns
from exporter.sidecar.config import StoreConfig
from exporter.sidecar.run_stats import percentile
from exporter.sidecar.wording import moment, run_duration

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COLUMNS = (
    "id",
    "job_id",
    "job_name",
    "status",
    "scheduled_run_time",
    "started_at",
    "finished_at",
    "duration_ms",
    "error_message",
)
STATUSES = JOB_STATUSES


class ReportError(ValueError):
    """A bad filter value, worded for the command line."""


def parse_since(text: str, now: datetime) -> datetime:
    """``24h``, ``30m``, ``7d``, ``2w``, ``90s`` ago, or an ISO date/time (UTC if naive)."""
    match = _SPAN.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"--since {text!r}: use a span such as 24h, 30m, 7d, or an ISO date such as 2026-11-01"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Run:
    id: Any
    job_id: str
    job_name: str | None
    status: str
    scheduled: datetime | None
    started: datetime | None
    finished: datetime | None
    duration: float | None  # seconds
    error: str | None


@dataclass(frozen=True, slots=True)
class JobStats:
    job_id: str
    runs: int
    failed: int
    failure_rate: float
    p50: float | None
    p95: float | None
    max: float | None
    last_success: datetime | None


def query_runs(
    connection: sa.Connection,
    store: StoreConfig,
    *,
    job: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[Run]:
    """Newest first. Timestamps are compared as naive UTC, as the table stores them."""
    table = history_columns(store.history_table, store.schema)
    query = sa.select(*(table.c[name] for name in _COLUMNS))
    if job is not None:
        query = query.where(table.c.job_id == job)
    if status is not None:
        query = query.where(table.c.status == status)
    if since is not None:
        cutoff = since.astimezone(UTC).replace(tzinfo=None)
        moment = sa.func.coalesce(table.c.started_at, table.c.scheduled_run_time)
        query = query.where(moment >= sa.literal(cutoff, sa.DateTime()))
    query = query.order_by(table.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [_run(row) for row in connection.execute(query)]


def _run(row: Any) -> Run:
    duration = None
    if row.duration_ms is not None:
        try:
            duration = float(row.duration_ms) / 1000.0
        except (TypeError, ValueError):
            duration = None
    return Run(
        id=row.id,
        job_id=str(row.job_id),
        job_name=row.job_name,
        status=str(row.status),
        scheduled=as_utc(row.scheduled_run_time),
        started=as_utc(row.started_at),
        finished=as_utc(row.finished_at),
        duration=duration,
        error=row.error_message,
    )


def job_stats(runs: list[Run]) -> list[JobStats]:
    """Per job: finished runs, failure rate among success/failed, duration percentiles."""
    by_job: dict[str, list[Run]] = {}
    for run in runs:
        by_job.setdefault(run.job_id, []).append(run)
    result = []
    for job_id, items in sorted(by_job.items()):
        finished = [r for r in items if r.status in ("success", "failed")]
        failed = sum(1 for r in finished if r.status == "failed")
        durations = sorted(r.duration for r in finished if r.duration is not None)
        successes = [r.finished or r.started for r in items if r.status == "success"]
        known = [moment for moment in successes if moment is not None]
        result.append(
            JobStats(
                job_id=job_id,
                runs=len(finished),
                failed=failed,
                failure_rate=failed / len(finished) if finished else 0.0,
                p50=percentile(durations, 0.50),
                p95=percentile(durations, 0.95),
                max=durations[-1] if durations else None,
                last_success=max(known) if known else None,
            )
        )
    return result


_STYLE = {"success": "green", "failed": "red", "missed": "yellow", "skipped": "yellow"}


def render_runs(runs: list[Run], console: Console) -> None:
    """One row per run, and one line per row: on a terminal the error is cut with "…" to what
    the width leaves it (``--json`` has it whole); off a terminal the console never wraps, so a
    row is one line whatever its length, ready for ``grep``."""
    rows = [
        (
            run.job_id,
            run.status,
            moment(run.started or run.scheduled),
            run_duration(run.duration),
            (run.error or "").splitlines()[0] if run.error else "",
        )
        for run in runs
    ]
    table = Table(title="Job executions (UTC)", title_justify="left")
    headers = ("job", "status", "started", "duration", "error")
    for name in headers:
        table.add_column(name, no_wrap=True, justify="right" if name == "duration" else "left")
    room = _error_room(rows, headers, console) if console.is_terminal else None
    for job_id, status, started, duration, error in rows:
        text = Text(error)
        if room is not None:
            text.truncate(room, overflow="ellipsis")
        table.add_row(
            Text(job_id), Text(status, style=_STYLE.get(status, "cyan")), started, duration, text
        )
    console.print(table)
    if not runs:
        console.print("no executions match")


def _error_room(rows: Sequence[tuple[str, ...]], headers: tuple[str, ...], console: Console) -> int:
    """Cells the error column may use on this terminal: the width less the other columns,
    their padding (one cell each side) and the box's vertical lines."""
    others = [
        max([len(headers[index])] + [len(row[index]) for row in rows])
        for index in range(len(headers) - 1)
    ]
    used = sum(others) + 2 * len(headers) + len(headers) + 1
    return max(len(headers[-1]), console.width - used)


def render_stats(stats: list[JobStats], console: Console) -> None:
    table = Table(title="Per-job statistics (UTC)", title_justify="left")
    for name in ("job", "runs", "failure rate", "p50", "p95", "max", "last success"):
        table.add_column(
            name,
            justify="left" if name in ("job", "last success") else "right",
            no_wrap=name != "job",
            overflow="fold" if name == "job" else "ellipsis",
        )
    for item in stats:
        table.add_row(
            Text(item.job_id), str(item.runs), f"{item.failure_rate:.1%}",
            run_duration(item.p50), run_duration(item.p95), run_duration(item.max),
            moment(item.last_success),
        )  # fmt: skip
    console.print(table)


def runs_json(runs: list[Run]) -> list[dict[str, Any]]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return [
        {
            "id": run.id if isinstance(run.id, int) else str(run.id),
            "job_id": run.job_id,
            "job_name": run.job_name,
            "status": run.status,
            "scheduled_run_time": iso(run.scheduled),
            "started_at": iso(run.started),
            "finished_at": iso(run.finished),
            "duration_seconds": run.duration,
            "error_message": run.error,
        }
        for run in runs
    ]


def stats_json(stats: list[JobStats]) -> list[dict[str, Any]]:
    return [
        {
            "job_id": s.job_id,
            "runs": s.runs,
            "failed": s.failed,
            "failure_rate": round(s.failure_rate, 6),
            "p50_seconds": s.p50,
            "p95_seconds": s.p95,
            "max_seconds": s.max,
            "last_success": s.last_success.isoformat() if s.last_success else None,
        }
        for s in stats
    ]
