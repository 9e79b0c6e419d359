"""`jobstore-exporter check`: the seed's health tree, rendered from a snapshot.

The verdict is computed once (:func:`assess`) and then rendered either as the Rich tree
operators know from the seed or as JSON for scripts, so both always agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from exporter.snapshot import JobView, StoreSnapshot, overdue_jobs

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


def assess(snapshot: StoreSnapshot, default_grace: float = 60.0) -> Assessment:
    """Decide healthy / unhealthy / unreachable for one store."""
    status = snapshot.sources.get("jobs")
    if status is None or not status.ok:
        error = status.error if status is not None else "not polled"
        return Assessment(
            snapshot.jobstore,
            False,
            False,
            f"Job store unreachable: {error}",
            0,
            0,
            0,
            0,
            error=error,
        )
    total = len(snapshot.jobs)
    overdue = overdue_jobs(snapshot, default_grace)
    upcoming = sorted(
        (job for job in snapshot.jobs if job.next_run_time is not None),
        key=lambda job: job.next_run_time or 0.0,
    )[:UPCOMING]
    if overdue:
        message = f"Scheduler stalled: {len(overdue)} of {total} tasks overdue"
    else:
        message = f"Scheduler running with {total} task{'s' if total != 1 else ''}"
    return Assessment(
        jobstore=snapshot.jobstore,
        healthy=not overdue,
        reachable=True,
        message=message,
        total=total,
        active=snapshot.active_jobs,
        paused=snapshot.paused_jobs,
        undecodable=snapshot.undecodable,
        upcoming=upcoming,
        overdue=overdue,
    )


def humanize_until(seconds: float) -> str:
    """``→ in 5h`` style: the largest whole unit, like the seed's tree."""
    if seconds < 0:
        return f"overdue by {humanize_span(-seconds)}"
    return f"in {humanize_span(seconds)}"


def humanize_span(seconds: float) -> str:
    """The largest whole unit of a duration: ``42s``, ``12m``, ``5h``, ``3d``."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def render_tree(
    results: list[Assessment], console: Console, *, detailed: bool, now: float | None = None
) -> None:
    """Print the seed's tree: a verdict line per store, then (``--detailed``) its tasks."""
    now = time.time() if now is None else now
    several = len(results) > 1
    for result in results:
        mark, style = ("✓", "green") if result.healthy else ("✗", "red")
        title = "scheduler" + (f" ({result.jobstore})" if several else "")
        console.print(Text.assemble((f"{mark} ", style), (f"{title:<17} ", "bold"), result.message))
        if detailed and result.reachable:
            for line in _branches(_task_nodes(result, now), "  "):
                console.print(line)


Node = tuple[Text, list["Node"]]


def _task_nodes(result: Assessment, now: float) -> list[Node]:
    children: list[Node] = []
    if result.undecodable:
        warning = f"⚠ {result.undecodable} undecodable job_state rows"
        children.append((Text(warning, style="yellow"), []))
    if result.overdue:
        late: list[Node] = [(Text(_job_line(job, now)), []) for job in result.overdue]
        children.append((Text(f"Overdue Tasks ({len(result.overdue)}):", style="red"), late))
    if result.upcoming:
        soon: list[Node] = [(Text(_job_line(job, now)), []) for job in result.upcoming]
        children.append((Text(f"Upcoming Tasks (Next {len(result.upcoming)}):"), soon))
    tasks = f"Tasks: {result.total} total, {result.active} active, {result.paused} paused"
    return [(Text(tasks), children)]


def _branches(nodes: list[Node], prefix: str) -> list[Text]:
    """Draw nodes with the seed's ``├─``/``└─`` guides, three columns per level."""
    lines: list[Text] = []
    for index, (text, children) in enumerate(nodes):
        last = index == len(nodes) - 1
        lines.append(Text(prefix + ("└─ " if last else "├─ ")) + text)
        lines.extend(_branches(children, prefix + ("   " if last else "│  ")))
    return lines


def _job_line(job: JobView, now: float) -> str:
    schedule = job.schedule or ("undecodable job_state" if not job.decoded else "unknown")
    when = humanize_until((job.next_run_time or now) - now)
    return f"{job.id}: {schedule} → {when}"


def to_json(results: list[Assessment], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {
        "healthy": all(r.healthy for r in results),
        "checked_at": datetime.fromtimestamp(now, UTC).isoformat(),
        "jobstores": [
            {
                "jobstore": r.jobstore,
                "healthy": r.healthy,
                "reachable": r.reachable,
                "message": r.message,
                "error": r.error,
                "tasks": {"total": r.total, "active": r.active, "paused": r.paused},
                "undecodable": r.undecodable,
                "overdue": [j.id for j in r.overdue],
                "upcoming": [_job_json(j, now) for j in r.upcoming],
            }
            for r in results
        ],
    }


def _job_json(job: JobView, now: float) -> dict[str, Any]:
    next_run = job.next_run_time
    return {
        "job_id": job.id,
        "name": job.name,
        "schedule": job.schedule,
        "next_run_time": datetime.fromtimestamp(next_run, UTC).isoformat() if next_run else None,
        "seconds_until": round(next_run - now, 3) if next_run is not None else None,
    }


def exit_code(results: list[Assessment]) -> int:
    """0 healthy, 1 unhealthy, 2 a store unreachable (as the contract says)."""
    if any(not r.reachable for r in results):
        return 2
    return 0 if all(r.healthy for r in results) else 1
