"""The status page (``GET /``) and its JSON twin (``GET /api/status``): the seed's scheduler card.

:func:`build_status` turns the latest snapshots into one plain model (a pure function of the
snapshots, the clock and the settings; it never reads the database). :func:`render_json` and
:func:`render_html` only format that model, so the page and the API always say the same thing.
The verdicts come from :mod:`exporter.sidecar.health`, so the page agrees with
``jobstore-exporter check`` too.

Everything shown in the page comes from the database (job names, error texts) and is escaped
where it is written into HTML; the page loads nothing (inline CSS, no scripts, no external
assets) and is served with a Content-Security-Policy that forbids anything else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporter import __version__
from exporter.sidecar import wording
from exporter.sidecar.config import Config
from exporter.sidecar.health import Assessment, assess, backup_result
from exporter.sidecar.snapshot import SOURCES, Heartbeat, JobRuns, JobView, StoreSnapshot
from exporter.sidecar.web.paths import job_path

SCHEMA_VERSION = 1
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MIN_REFRESH = 5
MAX_REFRESH = 300
THREAD_ABOVE_JOBS = 200
"""Render in a worker thread once the stores hold more jobs than this (like ``/metrics``)."""


@dataclass(frozen=True, slots=True)
class StatusOptions:
    """The settings the page depends on (taken from :class:`exporter.sidecar.config.Config`)."""

    poll_interval: float = 15.0
    default_grace: float = 60.0
    heartbeat_timeout: float = 30.0
    backup_job_ids: Mapping[str, str] = field(default_factory=dict)
    hide_run_errors: bool = False

    @classmethod
    def from_config(cls, config: Config) -> StatusOptions:
        settings = config.settings
        return cls(
            poll_interval=settings.poll_interval,
            default_grace=settings.overdue_grace,
            heartbeat_timeout=settings.heartbeat_timeout,
            backup_job_ids={store.name: store.backup_job_id for store in config.stores},
            hide_run_errors=settings.hide_run_errors,
        )

    @property
    def refresh_seconds(self) -> int:
        return max(MIN_REFRESH, min(MAX_REFRESH, round(self.poll_interval)))

    def backup_job_id(self, jobstore: str) -> str:
        return self.backup_job_ids.get(jobstore, "database_backup")


# -- the model --------------------------------------------------------------------------------


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _when(key: str, timestamp: float | None) -> dict[str, Any]:
    """``key`` as ISO-8601 UTC plus ``key_unix`` as Unix seconds; both null when unknown."""
    return {key: _iso(timestamp), f"{key}_unix": timestamp}


Select = Callable[[StoreSnapshot], Sequence[JobView]]
"""Which of a store's jobs get a row in ``jobs`` (the page shows one page of them)."""


def build_status(
    snapshots: Iterable[StoreSnapshot],
    now: float,
    options: StatusOptions,
    select: Select | None = None,
) -> dict[str, Any]:
    """The whole page as plain JSON-ready data. Pure: reads only its arguments.

    ``select`` narrows the ``jobs`` rows (a page of a filtered list); every other figure, the
    verdicts included, still covers the whole store.
    """
    snapshots = list(snapshots)
    stores = [_store(snapshot, now, options, select) for snapshot in snapshots]
    backup_failed = sorted(
        snapshot.jobstore
        for snapshot in snapshots
        if backup_result(snapshot, options.backup_job_id(snapshot.jobstore)) is False
    )
    down = [
        {"jobstore": store["jobstore"], "source": name, "error": source["error"]}
        for store in stores
        for name, source in store["sources"].items()
        if not source["up"]
    ]
    healthy = all(store["healthy"] for store in stores)
    return {
        "schema_version": SCHEMA_VERSION,
        "exporter_version": __version__,
        **_when("generated_at", now),
        "refresh_seconds": options.refresh_seconds,
        "healthy": healthy,
        "sources_down": down,
        "backups_failed": backup_failed,
        "headline": _headline(healthy, down, backup_failed),
        "hide_run_errors": options.hide_run_errors,
        "jobstores": stores,
    }


def _headline(
    healthy: bool, down: Sequence[Mapping[str, Any]], backup_failed: Sequence[str]
) -> str:
    """The page's one-line verdict: never "healthy" while the exporter cannot read a source,
    since then it does not know (a failing backup directory hides the backup signals), nor
    while the latest run of a store's backup job failed."""
    if not healthy:
        return "Attention needed"
    problems = []
    if backup_failed:
        problems.append(f"last backup failed: {', '.join(backup_failed)}")
    if down:
        names = ", ".join(sorted({f"{item['source']} ({item['jobstore']})" for item in down}))
        problems.append(f"not read: {names}")
    if problems:
        return "Schedulers running; " + "; ".join(problems)
    return "All schedulers healthy"


def _store(
    snapshot: StoreSnapshot, now: float, options: StatusOptions, select: Select | None
) -> dict[str, Any]:
    verdict = assess(snapshot, options.default_grace)
    runs = {item.job_id: item for item in snapshot.history or ()}
    overdue = {job.id for job in verdict.overdue}
    # Before the first successful read of the store nothing is known: no jobs rather than zero.
    everything = snapshot.jobs if snapshot.ever_succeeded else ()
    jobs = select(snapshot) if select is not None and snapshot.ever_succeeded else everything
    hide = options.hide_run_errors
    failures = [
        _failure(job, runs[job.id], hide)
        for job in everything
        if job.id in runs and runs[job.id].last_run_success is False
    ]
    failures.sort(key=lambda item: -(item["last_failure_unix"] or 0.0))
    return {
        "jobstore": snapshot.jobstore,
        "healthy": verdict.healthy,
        "reachable": verdict.reachable,
        "message": verdict.message,
        "error": verdict.error,
        "ever_polled": snapshot.ever_succeeded,
        **_when("polled_at", snapshot.taken_at),
        "tasks": _tasks(verdict, snapshot),
        "undecodable": snapshot.undecodable,
        "overdue": [job.id for job in verdict.overdue],
        "upcoming": [_upcoming(job, now) for job in verdict.upcoming],
        "history_available": snapshot.history is not None,
        "jobs": [
            {
                **_job(job, runs.get(job.id), job.id in overdue, now, hide),
                "page": job_path(snapshot.jobstore, job.id),
            }
            for job in jobs
        ],  # fmt: skip
        "backup": _backup(snapshot, options.backup_job_id(snapshot.jobstore), runs, hide),
        "failures": failures,
        "schedulers": [
            _scheduler(beat, now, options.heartbeat_timeout) for beat in snapshot.heartbeats
        ],
        "sources": {name: _source(snapshot, name) for name in SOURCES if name in snapshot.sources},
    }


def _tasks(verdict: Assessment, snapshot: StoreSnapshot) -> dict[str, int]:
    if verdict.reachable:
        return {"total": verdict.total, "active": verdict.active, "paused": verdict.paused}
    # Unreachable now: the last known jobs are still listed, so count those.
    if not snapshot.ever_succeeded:
        return {"total": 0, "active": 0, "paused": 0}
    total = len(snapshot.jobs)
    return {"total": total, "active": snapshot.active_jobs, "paused": snapshot.paused_jobs}


def _next_run(job: JobView, now: float) -> dict[str, Any]:
    next_run = job.next_run_time
    return {
        **_when("next_run_time", next_run),
        "seconds_until": round(next_run - now, 3) if next_run is not None else None,
        "until": wording.until(next_run - now) if next_run is not None else None,
    }


def _upcoming(job: JobView, now: float) -> dict[str, Any]:
    return {"job_id": job.id, "name": job.name, "schedule": job.schedule, **_next_run(job, now)}


def _job(
    job: JobView, runs: JobRuns | None, overdue: bool, now: float, hide: bool
) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "name": job.name,
        "schedule": job.schedule,
        "trigger": job.trigger,
        "executor": job.executor,
        "decoded": job.decoded,
        "paused": job.paused,
        "overdue": overdue,
        **_next_run(job, now),
        "misfire_grace_seconds": job.misfire_grace_time,
        "last_run": _last_run(runs, hide) if runs is not None else None,
    }


def _result(runs: JobRuns) -> str | None:
    if runs.last_run_success is None:
        return None
    return "success" if runs.last_run_success else "failed"


def _last_run(runs: JobRuns, hide: bool) -> dict[str, Any]:
    finished = runs.last_success if runs.last_run_success else runs.last_failure
    return {
        "result": _result(runs),
        **_when("finished_at", finished if runs.last_run_success is not None else None),
        "duration_seconds": runs.last_run_duration,
        "delay_seconds": runs.last_run_delay,
        **_when("last_success", runs.last_success),
        **_when("last_failure", runs.last_failure),
        "consecutive_failures": runs.consecutive_failures,
        "last_error": None if hide else runs.last_error,
        "running": runs.running,
        **_when("running_since", runs.running_since),
    }


def _failure(job: JobView, runs: JobRuns, hide: bool) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "name": job.name,
        "consecutive_failures": runs.consecutive_failures,
        **_when("last_failure", runs.last_failure),
        **_when("last_success", runs.last_success),
        "last_error": None if hide else runs.last_error,
    }


def _backup(
    snapshot: StoreSnapshot, job_id: str, runs: Mapping[str, JobRuns], hide: bool
) -> dict[str, Any] | None:
    stats = runs.get(job_id)
    files = _backup_files(getattr(snapshot, "backup_files", None))
    if stats is None and files is None:
        return None
    finished = None
    if stats is not None and stats.last_run_success is not None:
        finished = stats.last_success if stats.last_run_success else stats.last_failure
    return {
        "job_id": job_id,
        "in_store": any(job.id == job_id for job in snapshot.jobs),
        "result": _result(stats) if stats is not None else None,
        **_when("finished_at", finished),
        "duration_seconds": stats.last_run_duration if stats is not None else None,
        **_when("last_success", stats.last_success if stats is not None else None),
        **_when("last_failure", stats.last_failure if stats is not None else None),
        "consecutive_failures": stats.consecutive_failures if stats is not None else 0,
        "last_error": stats.last_error if stats is not None and not hide else None,
        "files": files,
    }


def _first(value: Any, *names: str) -> Any:
    for name in names:
        found = getattr(value, name, None)
        if found is not None:
            return found
    return None


def _backup_files(value: Any) -> dict[str, Any] | None:
    """Summarise the snapshot's backup-directory scan, whichever shape it has.

    Accepts a summary object (``count``/``files``, ``newest_mtime``, ``newest_size``,
    ``total_size``) or a sequence of files (``mtime``, ``size``); None when the snapshot has no
    such field or the directory was not scanned.
    """
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = [(_first(f, "mtime", "modified"), _first(f, "size", "size_bytes")) for f in value]
        dated = [(t, s) for t, s in items if isinstance(t, int | float)]
        newest = max(dated, key=lambda item: item[0]) if dated else (None, None)
        sizes = [s for _, s in items if isinstance(s, int | float)]
        return {
            "count": len(items),
            **_when("newest_file_time", newest[0]),
            "newest_file_size_bytes": newest[1],
            "total_size_bytes": sum(sizes) if sizes else None,
        }
    count = _first(value, "count", "files")
    return {
        "count": count if isinstance(count, int) else None,
        **_when("newest_file_time", _number(_first(value, "newest_mtime", "newest_timestamp"))),
        "newest_file_size_bytes": _number(_first(value, "newest_size", "newest_size_bytes")),
        "total_size_bytes": _number(_first(value, "total_size", "total_size_bytes")),
    }


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _scheduler(beat: Heartbeat, now: float, timeout: float) -> dict[str, Any]:
    age = now - beat.last_seen
    fresh = age <= timeout
    return {
        "scheduler": beat.scheduler,
        "host": beat.host,
        "pid": beat.pid,
        "state": beat.state,
        **_when("last_seen", beat.last_seen),
        "seconds_since": round(age, 3),
        "stale": not fresh,
        "running": beat.state == "running" and fresh,
    }


def _source(snapshot: StoreSnapshot, name: str) -> dict[str, Any]:
    status = snapshot.sources[name]
    return {
        "up": status.ok,
        **_when("last_success", status.last_success),
        "duration_seconds": round(status.duration, 6),
        "errors_total": status.errors_total,
        "error": status.error,
    }


def render_json(model: Mapping[str, Any]) -> bytes:
    return (json.dumps(model, indent=2, ensure_ascii=False) + "\n").encode()


# -- the page ---------------------------------------------------------------------------------


def render_html(model: Mapping[str, Any], view: Mapping[str, Any] | None = None) -> str:
    """The page for ``model``: templates/status.html (see ``exporter.sidecar.web``).

    ``view`` adds what only the page has (the filter, pagination, run strips, recent backups);
    without it the page shows the model's jobs as they are.
    """
    from exporter.sidecar.web.render import render, when

    now = float(model["generated_at_unix"])
    refresh = int(model["refresh_seconds"])
    return render(
        "status.html",
        refresh=refresh,
        now=now,
        version=model["exporter_version"],
        generated=when(model, "generated_at", now, relative=False),
        title=model["headline"],
        model=model,
        view=view or EMPTY_VIEW,
    )


EMPTY_VIEW: Mapping[str, Any] = {
    "filter": None,
    "pages": {},
    "strips": {},
    "strip_runs": 0,
    "backups": {},
    "failures_shown": 1_000_000,
}
