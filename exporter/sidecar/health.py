"""Verdicts derived once from a snapshot: the one place that decides what is wrong.

Every renderer (the ``check`` tree and JSON, the status page and its JSON, the job pages) shows
these verdicts and none works them out itself, so they cannot disagree: a store is *running*,
*stalled* (jobs past due while a scheduler should be firing them), *stopped* (every scheduler
process's last heartbeat says ``stopped``: shut down on purpose, its jobs wait for the next
start) or *unreachable*; which jobs are overdue and which come next; which sources could not be
read at the last poll; and how the backup job's latest run ended.

Pure functions of a snapshot and the settings; no clock reads, no I/O.

Past-due jobs mean two different things. When every scheduler process's last heartbeat says
``stopped``, the scheduler was shut down on purpose and its jobs simply wait for the next start
("Scheduler stopped"); otherwise a scheduler that should be running is not firing them
("Scheduler stalled"). Both are unhealthy, but an operator acts differently on each.
"Upcoming" lists only runs still in the future; past-due runs are overdue, never upcoming.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from exporter.sidecar.snapshot import SOURCES, JobView, StoreSnapshot
from exporter.sidecar.store_errors import headline
from exporter.sidecar.wording import ago

__all__ = [
    "UPCOMING",
    "Assessment",
    "assess",
    "backup_result",
    "overdue",
    "overdue_from",
    "overdue_jobs",
    "sources_down",
]

UPCOMING = 3


@dataclass(frozen=True)
class Assessment:
    jobstore: str
    healthy: bool
    reachable: bool
    message: str
    total: int
    active: int
    paused: int
    undecodable: int
    upcoming: list[JobView] = field(default_factory=list)
    overdue: list[JobView] = field(default_factory=list)
    error: str | None = None
    state: str = "running"  # running | stalled | stopped | unreachable
    sources_down: tuple[str, ...] = ()  # sources not read at the last poll, in SOURCES order


def assess(snapshot: StoreSnapshot, default_grace: float = 60.0) -> Assessment:
    """Decide healthy / unhealthy / unreachable for one store."""
    down = sources_down(snapshot)
    status = snapshot.sources.get("jobs")
    if status is None or not status.ok:
        error = status.error if status is not None else "not polled"
        return Assessment(
            snapshot.jobstore,
            False,
            False,
            f"{headline(error or '') or 'Job store unreachable'}: {error}",
            0,
            0,
            0,
            0,
            error=error,
            state="unreachable",
            sources_down=down,
        )
    total = len(snapshot.jobs)
    overdue = overdue_jobs(snapshot, default_grace)
    upcoming = sorted(
        (
            job
            for job in snapshot.jobs
            if job.next_run_time is not None and job.next_run_time >= snapshot.taken_at
        ),
        key=lambda job: job.next_run_time or 0.0,
    )[:UPCOMING]
    stopped_at = _stopped_at(snapshot)
    tasks = f"{total} task{'s' if total != 1 else ''}"
    if stopped_at is not None:
        state = "stopped"
        when = ago(snapshot.taken_at - stopped_at)
        waiting = f": {len(overdue)} of {total} tasks due, waiting for a start" if overdue else ""
        message = f"Scheduler stopped {when} with {tasks}{waiting}"
    elif overdue:
        state = "stalled"
        message = f"Scheduler stalled: {len(overdue)} of {total} tasks overdue"
    else:
        state = "running"
        message = f"Scheduler running with {tasks}"
    return Assessment(
        jobstore=snapshot.jobstore,
        healthy=state == "running",
        state=state,
        reachable=True,
        message=message,
        total=total,
        active=snapshot.active_jobs,
        paused=snapshot.paused_jobs,
        undecodable=snapshot.undecodable,
        upcoming=upcoming,
        overdue=overdue,
        sources_down=down,
    )


def _stopped_at(snapshot: StoreSnapshot) -> float | None:
    """When the scheduler was shut down on purpose: every process's last heartbeat says
    ``stopped`` (the kit writes it at a clean shutdown). None while any process runs, or when
    the store has no heartbeats (then past-due jobs can only mean a stall)."""
    beats = snapshot.heartbeats
    if not beats or any(beat.state != "stopped" for beat in beats):
        return None
    return max(beat.last_seen for beat in beats)


def sources_down(snapshot: StoreSnapshot) -> tuple[str, ...]:
    """The sources that were polled and could not be read at the last poll."""
    return tuple(
        name
        for name in SOURCES
        if (status := snapshot.sources.get(name)) is not None and not status.ok
    )


def backup_result(snapshot: StoreSnapshot, backup_job_id: str) -> bool | None:
    """True if the backup job's latest finished run succeeded, False if it failed, None if no
    finished run of it is known (never ran, or no history table)."""
    for runs in snapshot.history or ():
        if runs.job_id == backup_job_id:
            return runs.last_run_success
    return None


def overdue(
    jobs: Iterable[JobView], taken_at: float, default_grace: float
) -> Iterator[tuple[JobView, float]]:
    """The one overdue rule: each active job of ``jobs`` whose next fire time had passed by more
    than its grace at the poll (``taken_at``), with how far past it was.

    Judged against the poll time, not the scrape time: the scheduler advances ``next_run_time``
    the moment it submits a run, so a row read at poll time is only evidence up to that moment.
    Jobs with unlimited grace use ``default_grace``; paused jobs are never overdue. One pass
    with no call per job; the metric store asks it at every poll only of the jobs that may be
    overdue (:func:`overdue_from`).
    """
    for job in jobs:
        if (when := job.next_run_time) is None:
            continue
        late = taken_at - when
        if late > (grace if (grace := job.misfire_grace_time) is not None else default_grace):
            yield job, late


def overdue_from(job: JobView, default_grace: float) -> float:
    """A poll time before which :func:`overdue` never finds ``job`` overdue: its next fire time
    plus grace, a second early (and a little more at large magnitudes) so that float rounding
    never hides one. What is kept per job to ask the rule only of the jobs that may be overdue
    (inf for a paused job; NaN, never asked, for a next fire time that is not a number)."""
    when = job.next_run_time
    if when is None:
        return math.inf
    grace = job.misfire_grace_time
    due = when + (grace if grace is not None else default_grace)
    return due - 1.0 - abs(due) * 1e-9


def overdue_jobs(snapshot: StoreSnapshot, default_grace: float) -> list[JobView]:
    """Active jobs whose next fire time had passed by more than their grace when polled."""
    return [job for job, _ in overdue(snapshot.jobs, snapshot.taken_at, default_grace)]
