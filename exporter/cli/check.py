"""`jobstore-exporter check`: the seed's health tree, rendered from a snapshot.

The verdict comes from :mod:`exporter.sidecar.health` (computed once, read by every renderer) and is
rendered here either as the Rich tree operators know from the seed or as JSON for scripts, so
both always agree with each other and with the status page.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from exporter.sidecar.health import Assessment
from exporter.sidecar.snapshot import JobView
from exporter.sidecar.wording import until


def render_tree(
    results: list[Assessment], console: Console, *, detailed: bool, now: float | None = None
) -> None:
    """Print the seed's tree: a verdict line per store, then (``--detailed``) its tasks."""
    now = time.time() if now is None else now
    several = len(results) > 1
    for result in results:
        mark, style = _MARKS[result.state]
        title = "scheduler" + (f" ({result.jobstore})" if several else "")
        line = Text.assemble((f"{mark} ", style), (f"{title:<17} ", "bold"), result.message)
        console.print(line, soft_wrap=not console.is_terminal)
        if detailed and result.reachable:
            for branch in _branches(_task_nodes(result, now), "  "):
                console.print(branch, soft_wrap=not console.is_terminal)


_MARKS = {
    "running": ("✓", "green"),
    "stopped": ("■", "yellow"),
    "stalled": ("✗", "red"),
    "unreachable": ("✗", "red"),
}

Node = tuple[Text, list["Node"]]


def _task_nodes(result: Assessment, now: float) -> list[Node]:
    children: list[Node] = []
    if result.undecodable:
        warning = f"⚠ {result.undecodable} undecodable job_state rows"
        children.append((Text(warning, style="yellow"), []))
    if result.overdue:
        late: list[Node] = [(Text(_job_line(job, now)), []) for job in result.overdue]
        label, style = (
            ("Due While Stopped", "yellow") if result.state == "stopped" else ("Overdue", "red")
        )
        children.append((Text(f"{label} Tasks ({len(result.overdue)}):", style=style), late))
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
    when = until((job.next_run_time or now) - now)
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
                "state": r.state,
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
