"""The job page as plain data: pure functions of the snapshot's job, its decoded state and runs.

Like :func:`exporter.sidecar.web.status.build_status`, nothing here reads the database or the
clock; the routes fetch (``exporter.sidecar.web.runs``) and these functions shape. The JSON API
returns the same dicts the templates draw, so the page and ``/api/jobs/...`` always agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.sidecar.decode import DecodedJob
from exporter.sidecar.run_stats import percentile
from exporter.sidecar.schedules.fire_times import next_fire_time
from exporter.sidecar.schedules.walk_budget import ROW_BUDGET, walk_budget
from exporter.sidecar.snapshot import JobRuns, JobView
from exporter.sidecar.web.runs import Run

STATUSES = ("success", "failed", "missed", "skipped", "running")
WINDOWS = (("24h", 86400.0), ("7d", 7 * 86400.0))
NEXT_FIRE_TIMES = 5
TIMELINE_RUNS = 100


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def when(key: str, timestamp: float | None) -> dict[str, Any]:
    """``key`` as ISO-8601 UTC plus ``key_unix``; both null when unknown (as /api/status)."""
    return {key: iso(timestamp), f"{key}_unix": timestamp}


def next_fire_times(trigger: Any, now: float, count: int = NEXT_FIRE_TIMES) -> list[float]:
    """The trigger's next ``count`` fire times after ``now``, by the bounded walk the poller uses
    (an And trigger that never agrees ends the list instead of spinning)."""
    result: list[float] = []
    moment = datetime.fromtimestamp(now, UTC)
    with walk_budget(ROW_BUDGET):  # a trigger too costly to walk ends the list early
        for _ in range(count):
            try:
                following = next_fire_time(trigger, moment)
            except Exception:  # noqa: BLE001 - an odd or too costly trigger must not break the page
                break
            if following is None or (result and following.timestamp() <= result[-1]):
                break
            if following.timestamp() < now:  # a date trigger whose date has passed
                break
            result.append(following.timestamp())
            moment = following + timedelta(microseconds=1)
    return result


def job_card(
    jobstore: str, job: JobView, decoded: DecodedJob | None, overdue: bool, now: float
) -> dict[str, Any]:
    """What the store says about the job; coalesce, max instances and fire times need the
    decoded ``job_state`` and are null when it could not be decoded."""
    fire_times = (
        next_fire_times(decoded.trigger, now)
        if decoded is not None and decoded.trigger is not None and not job.paused
        else []
    )
    state = "paused" if job.paused else ("overdue" if overdue else "active")
    return {
        "jobstore": jobstore,
        "job_id": job.id,
        "name": job.name,
        "func": job.func,
        "trigger": job.trigger,
        "schedule": job.schedule,
        "executor": job.executor,
        "decoded": job.decoded,
        "paused": job.paused,
        "state": state,
        **when("next_run_time", job.next_run_time),
        "misfire_grace_seconds": job.misfire_grace_time,
        "coalesce": decoded.coalesce if decoded is not None else None,
        "max_instances": decoded.max_instances if decoded is not None else None,
        "next_fire_times": [iso(moment) for moment in fire_times],
        "next_fire_times_unix": fire_times,
    }


def window_stats(runs: Sequence[Run], now: float, seconds: float, complete: bool) -> dict[str, Any]:
    """Runs by status, failure rate and p50/p95/max duration over the window, as
    ``jobstore-exporter history --stats`` computes them: over success and failed runs, with its
    nearest-rank :func:`exporter.sidecar.run_stats.percentile`.

    ``complete`` is false when the rows read (the newest :data:`runs.STATS_ROWS`) did not
    reach back to the window's start, so the figures cover only its newest part.
    """
    start = now - seconds
    inside = [run for run in runs if run.moment is not None and run.moment >= start]
    by_status = dict.fromkeys(STATUSES, 0)
    for run in inside:
        by_status[run.status] = by_status.get(run.status, 0) + 1
    finished = [run for run in inside if run.status in ("success", "failed")]
    failed = sum(1 for run in finished if run.status == "failed")
    durations = sorted(run.duration for run in finished if run.duration is not None)
    oldest = min((run.moment for run in inside if run.moment is not None), default=None)
    whole = complete or not inside
    return {
        "runs": by_status,
        "finished": len(finished),
        "failed": failed,
        "failure_rate": round(failed / len(finished), 6) if finished else None,
        "p50_seconds": percentile(durations, 0.50),
        "p95_seconds": percentile(durations, 0.95),
        "max_seconds": durations[-1] if durations else None,
        "complete": whole,
        **when("covers_since", start if whole else oldest),
    }


def job_stats(runs: Sequence[Run], now: float, truncated: bool) -> dict[str, Any]:
    """Both windows. ``truncated``: the read stopped at its row cap, older runs exist."""
    result = {}
    for name, seconds in WINDOWS:
        oldest = min((run.moment for run in runs if run.moment is not None), default=None)
        complete = not truncated or (oldest is not None and oldest <= now - seconds)
        result[name] = window_stats(runs, now, seconds, complete)
    return result


def run_json(run: Run, hide_errors: bool) -> dict[str, Any]:
    """One run for the runs API (the contract's keys) and the page's table."""
    return {
        "id": run.id,
        "status": run.status,
        "scheduled_run_time": iso(run.scheduled),
        "started_at": iso(run.started),
        "finished_at": iso(run.finished),
        "duration_seconds": run.duration,
        "error": None if hide_errors else run.error,
    }


def run_row(run: Run, hide_errors: bool) -> dict[str, Any]:
    """One row of the page's run table: the API's keys plus what the template shows."""
    error = None if hide_errors else run.error
    first = error.strip().splitlines()[0] if error and error.strip() else None
    return {
        **run_json(run, hide_errors),
        "scheduled_run_time_unix": run.scheduled,
        "started_at_unix": run.started,
        "finished_at_unix": run.finished,
        "delay_seconds": run.delay,
        "error_first_line": first,
        "error_more": error is not None and first is not None and error.strip() != first,
        "error_hidden": hide_errors and run.error is not None,
    }


# -- the timeline -----------------------------------------------------------------------------

WIDTH, HEIGHT, PAD = 1000, 120, 4


def timeline(runs: Sequence[Run], now: float) -> dict[str, Any]:
    """Bars of an SVG timeline, oldest first: time on x (the span of the runs shown), duration
    as height on a log scale (a 2 s run and a 2 h run both stay visible), one class per status.

    Missed and skipped runs have no duration and are drawn as full-height ticks (after the bars,
    so they stay on top); a running run as a bar up to now. Runs closer in time than a bar's
    width are nudged apart, keeping their order, so a burst of runs never hides one behind
    another; with at most :data:`TIMELINE_RUNS` bars there is always room.
    """
    dated = [run for run in runs if run.moment is not None]
    if not dated:
        return {"width": WIDTH, "height": HEIGHT, "bars": [], "start": None, "end": None}
    moments = [run.moment for run in dated if run.moment is not None]
    start, end = min(moments), max(now, max(moments))
    span = max(end - start, 1.0)
    durations = [_shown_duration(run, now) for run in dated]
    longest = max([d for d in durations if d is not None] or [1.0])
    scale = math.log1p(max(longest, 0.001))
    inner = WIDTH - 2 * PAD
    bar = max(2.0, min(12.0, inner / len(dated) * 0.6))
    step = bar + 1.0
    xs = [PAD + (moment - start) / span * (inner - bar) for moment in moments]
    for i in range(1, len(xs)):  # push right past the previous bar...
        xs[i] = max(xs[i], xs[i - 1] + step)
    xs[-1] = min(xs[-1], PAD + inner - bar)
    for i in range(len(xs) - 2, -1, -1):  # ...and back left from the right edge
        xs[i] = min(xs[i], xs[i + 1] - step)
    bars: list[dict[str, Any]] = []
    for run, duration, x in zip(dated, durations, xs, strict=True):
        if duration is None:
            height = float(HEIGHT - 2 * PAD)
        else:
            height = max(3.0, math.log1p(duration) / scale * (HEIGHT - 2 * PAD))
        words = f"{run.status} · {iso(run.moment)}"
        if duration is not None:
            words += f" · {duration:.3g} s"
        bars.append(
            {
                "x": round(x, 1),
                "y": round(HEIGHT - PAD - height, 1),
                "width": round(bar if duration is not None else min(bar, 3.0), 1),
                "height": round(height, 1),
                "status": run.status,
                "tick": duration is None,
                "title": words,
            }
        )
    bars.sort(key=lambda item: item["tick"])  # ticks drawn last, on top
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "bars": bars,
        **when("start", start),
        **when("end", end),
    }


def _shown_duration(run: Run, now: float) -> float | None:
    if run.status == "running" and run.started is not None:
        return max(0.0, now - run.started)
    if run.status in ("missed", "skipped"):
        return None
    return run.duration


def last_run(runs: JobRuns | None) -> Mapping[str, Any] | None:
    """The snapshot's running-run count, shown on the card beside the table's rows."""
    if runs is None:
        return None
    return {"running": runs.running, **when("running_since", runs.running_since)}
