"""Crash recovery and retention, run on the writer thread while the scheduler runs.

A scheduler process that died leaves `running` rows behind; these are closed as `failed` once the
process cannot be alive. Retention prunes old history and heartbeat rows in small batches.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

import sqlalchemy as sa

from exporter.kit.heartbeat import utcnow
from exporter.kit.rows import FAILED, RUNNING

log = logging.getLogger("exporter.kit")

# --------------------------------------------------------------------------------------------
# Crash recovery and retention (run on the writer thread)
# --------------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def close_orphaned_runs(
    engine: sa.Engine,
    history: sa.Table,
    heartbeats: sa.Table | None,
    *,
    me: str,
    host: str,
    include_own: bool,
    stale_after: float,
    dead_pid_after: float,
) -> int:
    """Close as `failed` the `running` rows whose scheduler process cannot be alive.

    A row's scheduler is taken for dead when
    - it is this scheduler's own id and `include_own` (called before this process has written
      any row: so the row is a previous incarnation's, e.g. a restarted container's);
    - its heartbeat is older than `stale_after` seconds;
    - it ran on this host under a pid that no longer exists, and its heartbeat (if any) is older
      than `dead_pid_after` seconds (a live process in another PID namespace still beats).
    Rows without a `scheduler_id` (written by something else, e.g. Aegis) are left alone.
    """
    now = utcnow()
    columns = [history.c.id, history.c.scheduler_id, history.c.host, history.c.pid]
    if heartbeats is not None:
        query = sa.select(*columns, heartbeats.c.last_seen, heartbeats.c.pid).select_from(
            history.outerjoin(heartbeats, heartbeats.c.scheduler_id == history.c.scheduler_id)
        )
    else:
        query = sa.select(*columns, sa.null(), sa.null()).select_from(history)
    query = query.where(history.c.status == RUNNING, history.c.scheduler_id.is_not(None))
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(query)]

    dead: dict[str, tuple[datetime, list[int]]] = {}
    for row_id, owner, row_host, row_pid, last_seen, beat_pid in rows:
        if owner == me and not include_own:
            continue
        age = (now - last_seen).total_seconds() if last_seen is not None else None
        pid = beat_pid if beat_pid is not None else row_pid
        if (
            owner == me
            or (age is not None and age > stale_after)
            or (
                row_host == host
                and pid is not None
                and (age is None or age > dead_pid_after)
                and not pid_alive(pid)
            )
        ):
            dead.setdefault(owner, (last_seen or now, []))[1].append(row_id)

    closed = 0
    for owner, (ended, ids) in dead.items():
        message = (
            f"scheduler {owner} stopped while this run was in progress (process ended or "
            f"lost); closed by {me}"
        )
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            with engine.begin() as conn:
                result = conn.execute(
                    history.update()
                    .where(history.c.id.in_(chunk), history.c.status == RUNNING)
                    .values(status=FAILED, finished_at=ended, error_message=message)
                )
                closed += max(result.rowcount or 0, 0)
    if closed:
        log.warning(
            "closed %d runs left `running` by schedulers that are gone (%s)",
            closed,
            ", ".join(sorted(dead)),
        )
    return closed


def prune_history(
    engine: sa.Engine, history: sa.Table, *, older_than: timedelta, batch: int = 500
) -> int:
    """Delete one batch of finished rows older than `older_than`; returns how many went."""
    cutoff = utcnow() - older_than
    old = sa.or_(
        history.c.finished_at < cutoff,
        sa.and_(history.c.finished_at.is_(None), history.c.scheduled_run_time < cutoff),
    )
    with engine.begin() as conn:
        ids = (
            conn.execute(
                sa.select(history.c.id)
                .where(history.c.status != RUNNING, old)
                .order_by(history.c.id)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if ids:
            conn.execute(history.delete().where(history.c.id.in_(ids)))
    return len(ids)


def prune_heartbeats(engine: sa.Engine, heartbeats: sa.Table, *, older_than: timedelta) -> int:
    """Forget schedulers not seen for `older_than`."""
    with engine.begin() as conn:
        result = conn.execute(
            heartbeats.delete().where(heartbeats.c.last_seen < utcnow() - older_than)
        )
    return max(result.rowcount or 0, 0)
