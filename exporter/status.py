"""The status page (``GET /``) and its JSON twin (``GET /api/status``): the seed's scheduler card.

:func:`build_status` turns the latest snapshots into one plain model (a pure function of the
snapshots, the clock and the settings; it never reads the database). :func:`render_json` and
:func:`render_html` only format that model, so the page and the API always say the same thing.
The verdict line comes from :func:`exporter.check.assess`, so the page agrees with
``jobstore-exporter check`` too.

Everything shown in the page comes from the database (job names, error texts) and is escaped
where it is written into HTML; the page loads nothing (inline CSS, no scripts, no external
assets) and is served with a Content-Security-Policy that forbids anything else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.check import Assessment, assess, humanize_span, humanize_until
from exporter.config import Config
from exporter.snapshot import SOURCES, Heartbeat, JobRuns, JobView, StoreSnapshot

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
    """The settings the page depends on (taken from :class:`exporter.config.Config`)."""

    poll_interval: float = 15.0
    default_grace: float = 60.0
    heartbeat_timeout: float = 30.0
    backup_job_ids: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> StatusOptions:
        settings = config.settings
        return cls(
            poll_interval=settings.poll_interval,
            default_grace=settings.overdue_grace,
            heartbeat_timeout=settings.heartbeat_timeout,
            backup_job_ids={store.name: store.backup_job_id for store in config.stores},
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


def build_status(
    snapshots: Iterable[StoreSnapshot], now: float, options: StatusOptions
) -> dict[str, Any]:
    """The whole page as plain JSON-ready data. Pure: reads only its arguments."""
    stores = [_store(snapshot, now, options) for snapshot in snapshots]
    return {
        "schema_version": SCHEMA_VERSION,
        "exporter_version": __version__,
        **_when("generated_at", now),
        "refresh_seconds": options.refresh_seconds,
        "healthy": all(store["healthy"] for store in stores),
        "jobstores": stores,
    }


def _store(snapshot: StoreSnapshot, now: float, options: StatusOptions) -> dict[str, Any]:
    verdict = assess(snapshot, options.default_grace)
    runs = {item.job_id: item for item in snapshot.history or ()}
    overdue = {job.id for job in verdict.overdue}
    # Before the first successful read of the store nothing is known: no jobs rather than zero.
    jobs = snapshot.jobs if snapshot.ever_succeeded else ()
    failures = [
        _failure(job, runs[job.id])
        for job in jobs
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
        "jobs": [_job(job, runs.get(job.id), job.id in overdue, now) for job in jobs],
        "backup": _backup(snapshot, options.backup_job_id(snapshot.jobstore), runs),
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
        "until": humanize_until(next_run - now) if next_run is not None else None,
    }


def _upcoming(job: JobView, now: float) -> dict[str, Any]:
    return {"job_id": job.id, "name": job.name, "schedule": job.schedule, **_next_run(job, now)}


def _job(job: JobView, runs: JobRuns | None, overdue: bool, now: float) -> dict[str, Any]:
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
        "last_run": _last_run(runs) if runs is not None else None,
    }


def _result(runs: JobRuns) -> str | None:
    if runs.last_run_success is None:
        return None
    return "success" if runs.last_run_success else "failed"


def _last_run(runs: JobRuns) -> dict[str, Any]:
    finished = runs.last_success if runs.last_run_success else runs.last_failure
    return {
        "result": _result(runs),
        **_when("finished_at", finished if runs.last_run_success is not None else None),
        "duration_seconds": runs.last_run_duration,
        "delay_seconds": runs.last_run_delay,
        **_when("last_success", runs.last_success),
        **_when("last_failure", runs.last_failure),
        "consecutive_failures": runs.consecutive_failures,
        "last_error": runs.last_error,
        "running": runs.running,
        **_when("running_since", runs.running_since),
    }


def _failure(job: JobView, runs: JobRuns) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "name": job.name,
        "consecutive_failures": runs.consecutive_failures,
        **_when("last_failure", runs.last_failure),
        **_when("last_success", runs.last_success),
        "last_error": runs.last_error,
    }


def _backup(
    snapshot: StoreSnapshot, job_id: str, runs: Mapping[str, JobRuns]
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
        "last_error": stats.last_error if stats is not None else None,
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

_CSS = """
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#5c6577;
--line:#dde1e8;--ok:#1a7f37;--bad:#c62828;--warn:#9a6700;--accent:#2457c5;--code:#eef1f5}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--card:#1b2029;--fg:#e4e8ef;
--muted:#9aa4b5;--line:#2d3440;--ok:#4ac26b;--bad:#ff6b6b;--warn:#d4a72c;--accent:#7aa7ff;
--code:#242b36}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header,main,footer{max-width:1180px;margin:0 auto;padding:0 16px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 16px;padding-top:16px}
h1{font-size:22px;margin:0}
h2{font-size:18px;margin:0 0 4px}
h3{font-size:14px;margin:18px 0 6px;text-transform:uppercase;letter-spacing:.04em;
color:var(--muted)}
a{color:var(--accent)}
nav{margin-left:auto}
nav a{margin-left:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;
margin:16px 0}
.verdict{font-size:17px;margin:0}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
.mark{font-weight:700}
.counts{display:flex;gap:10px;flex-wrap:wrap;margin:10px 0 0;padding:0;list-style:none}
.counts li{border:1px solid var(--line);border-radius:8px;padding:4px 12px}
.counts b{font-size:18px;margin-right:4px}
table{border-collapse:collapse;width:100%;font-size:14px}
caption{text-align:left;color:var(--muted);padding:0 0 6px}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600;white-space:nowrap}
tbody th{color:var(--fg);font-weight:400}
tbody th code{font-weight:600}
.sub{color:var(--muted);font-size:13px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{white-space:pre-wrap;word-break:break-word;margin:0;background:var(--code);padding:4px 6px;
border-radius:4px}
ol.upcoming{margin:0;padding-left:22px}
ol.upcoming li{margin:2px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{color:var(--muted)}dd{margin:0}
.badge{display:inline-block;border-radius:999px;padding:0 8px;font-size:12px;font-weight:600;
border:1px solid currentColor}
.scroll{overflow-x:auto}
footer{color:var(--muted);font-size:13px;padding-bottom:24px}
"""


_NOTHING = '<span class="muted">—</span>'


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return escape("" if value is None else str(value), quote=True)


def _ago(seconds: float) -> str:
    return "just now" if seconds < 1 else f"{humanize_span(seconds)} ago"


def _time(item: Mapping[str, Any], key: str, now: float, *, relative: bool = True) -> str:
    """``<time>`` with the UTC time, and how long ago / until when ``relative``."""
    iso, unix = item.get(key), item.get(f"{key}_unix")
    if iso is None or unix is None:
        return _NOTHING
    shown = datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = f'<time datetime="{_e(iso)}">{_e(shown)}</time>'
    if relative:
        delta = unix - now
        words = humanize_until(delta) if delta >= 0 else _ago(-delta)
        text += f' <span class="muted">({_e(words)})</span>'
    return text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _NOTHING
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes}m {rest:02d}s"
    hours, rest = divmod(int(seconds) // 60, 60)
    return f"{hours}h {rest:02d}m"


def _result_badge(result: str | None) -> str:
    if result is None:
        return '<span class="muted">no runs</span>'
    css = "ok" if result == "success" else "bad"
    return f'<span class="badge {css}">{_e(result)}</span>'


def render_html(model: Mapping[str, Any]) -> str:
    now = float(model["generated_at_unix"])
    stores = model["jobstores"]
    several = len(stores) > 1
    body = "\n".join(_store_html(store, now, several) for store in stores)
    overall = "All schedulers healthy" if model["healthy"] else "Attention needed"
    css = "ok" if model["healthy"] else "bad"
    refresh = int(model["refresh_seconds"])
    generated = _time(model, "generated_at", now, relative=False)
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="color-scheme" content="light dark">',
            f'<meta http-equiv="refresh" content="{refresh}">',
            f"<title>{_e(overall)} · jobstore-exporter</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            "<header>",
            "<h1>Scheduler status</h1>",
            f'<span class="{css}">{_e(overall)}</span>',
            '<nav aria-label="Endpoints"><a href="/metrics">/metrics</a>'
            '<a href="/api/status">/api/status</a></nav>',
            "</header>",
            f"<main>\n{body}\n</main>",
            "<footer>",
            f"<p>jobstore-exporter {_e(model['exporter_version'])} · generated {generated}"
            f" · refreshes every {refresh} s · times in UTC</p>",
            "</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _store_html(store: Mapping[str, Any], now: float, several: bool) -> str:
    name = store["jobstore"]
    anchor = f"store-{_e(name)}"
    mark, css = ("✓", "ok") if store["healthy"] else ("✗", "bad")
    title = "scheduler" + (f" ({name})" if several or name != "default" else "")
    tasks = store["tasks"]
    parts = [
        f'<section class="card" aria-labelledby="{anchor}">',
        f'<h2 id="{anchor}"><span class="mark {css}" aria-hidden="true">{mark}</span> '
        f"{_e(title)}</h2>",
        f'<p class="verdict {"" if store["healthy"] else "bad"}">{_e(store["message"])}</p>',
        f'<p class="muted">Last read of the store {_time(store, "polled_at", now)}</p>',
        '<ul class="counts" aria-label="Tasks">'
        f"<li><b>{tasks['total']}</b>total</li><li><b>{tasks['active']}</b>active</li>"
        f"<li><b>{tasks['paused']}</b>paused</li></ul>",
    ]
    if store["undecodable"]:
        parts.append(
            f'<p class="warn">⚠ {store["undecodable"]} job_state rows could not be decoded '
            "safely; their schedule is unknown.</p>"
        )
    if store["overdue"]:
        overdue = ", ".join(f"<code>{_e(job_id)}</code>" for job_id in store["overdue"])
        parts.append(f'<p class="bad">Overdue: {overdue}</p>')
    parts.append(_upcoming_html(store))
    parts.append(_jobs_html(store, now))
    parts.append(_backup_html(store, now))
    parts.append(_failures_html(store, now))
    parts.append(_schedulers_html(store, now))
    parts.append(_sources_html(store, now))
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _upcoming_html(store: Mapping[str, Any]) -> str:
    upcoming = store["upcoming"]
    if not upcoming:
        return ""
    items = "".join(
        f"<li><code>{_e(item['job_id'])}</code>: {_e(item['schedule'] or 'unknown schedule')}"
        f" → {_e(item['until'])}</li>"
        for item in upcoming
    )
    return f'<h3>Upcoming tasks (next {len(upcoming)})</h3>\n<ol class="upcoming">{items}</ol>'


def _jobs_html(store: Mapping[str, Any], now: float) -> str:
    jobs = store["jobs"]
    if not store["ever_polled"]:
        return '<p class="muted">The job store has not been read yet.</p>'
    if not jobs:
        return '<p class="muted">No jobs in the store.</p>'
    rows = []
    for job in jobs:
        if job["paused"]:
            state = '<span class="badge warn">paused</span>'
        elif job["overdue"]:
            state = '<span class="badge bad">overdue</span>'
        else:
            state = '<span class="badge ok">active</span>'
        schedule = job["schedule"] or ("undecodable job_state" if not job["decoded"] else "")
        last = job["last_run"]
        if last is None:
            result = _NOTHING
            duration = last_success = _NOTHING
        else:
            result = _result_badge(last["result"])
            if last["running"]:
                result += ' <span class="badge warn">running</span>'
            duration = _duration(last["duration_seconds"])
            last_success = _time(last, "last_success", now)
        rows.append(
            "<tr>"
            f'<th scope="row"><code>{_e(job["job_id"])}</code>'
            f'<div class="sub">{_e(job["name"])}</div></th>'
            f"<td>{_e(schedule)}</td>"
            f"<td>{_time(job, 'next_run_time', now)}</td>"
            f"<td>{state}</td><td>{result}</td>"
            f'<td class="num">{duration}</td><td>{last_success}</td>'
            "</tr>"
        )
    return (
        '<h3>Jobs</h3>\n<div class="scroll"><table>'
        f"<caption>{len(jobs)} job{'s' if len(jobs) != 1 else ''} in "
        f"{_e(store['jobstore'])}</caption>"
        '<thead><tr><th scope="col">Job</th><th scope="col">Schedule</th>'
        '<th scope="col">Next run</th><th scope="col">State</th>'
        '<th scope="col">Last result</th><th scope="col">Duration</th>'
        '<th scope="col">Last success</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _backup_html(store: Mapping[str, Any], now: float) -> str:
    backup = store["backup"]
    if backup is None:
        return ""
    job = f"<code>{_e(backup['job_id'])}</code>"
    if not backup["in_store"]:
        job += ' <span class="muted">(not in the store)</span>'
    rows = [
        ("Job", job),
        ("Result", _result_badge(backup["result"])),
        ("Finished", _time(backup, "finished_at", now)),
        ("Duration", _duration(backup["duration_seconds"])),
        ("Last success", _time(backup, "last_success", now)),
    ]
    if backup["result"] == "failed":
        rows.append(("Failures in a row", str(int(backup["consecutive_failures"]))))
        rows.append(("Error", f"<pre>{_e(backup['last_error'] or 'no message')}</pre>"))
    files = backup["files"]
    if files is not None:
        size = files["newest_file_size_bytes"]
        total = files["total_size_bytes"]
        rows.append(("Backup files", _e(files["count"] if files["count"] is not None else "?")))
        rows.append(("Newest file", _time(files, "newest_file_time", now)))
        rows.append(("Newest size", _e(f"{size:,.0f} bytes") if size is not None else "—"))
        rows.append(("All files", _e(f"{total:,.0f} bytes") if total is not None else "—"))
    items = "".join(f"<dt>{_e(label)}</dt><dd>{value}</dd>" for label, value in rows)
    return f"<h3>Last backup</h3>\n<dl>{items}</dl>"


def _failures_html(store: Mapping[str, Any], now: float) -> str:
    failures = store["failures"]
    if not store["history_available"]:
        return ""
    if not failures:
        return '<h3>Recent failures</h3>\n<p class="ok">No job failed its last run.</p>'
    rows = "".join(
        "<tr>"
        f'<th scope="row"><code>{_e(item["job_id"])}</code>'
        f'<div class="sub">{_e(item["name"])}</div></th>'
        f'<td class="num">{int(item["consecutive_failures"])}</td>'
        f"<td>{_time(item, 'last_failure', now)}</td>"
        f"<td>{_time(item, 'last_success', now)}</td>"
        f"<td><pre>{_e(item['last_error'] or 'no message')}</pre></td>"
        "</tr>"
        for item in failures
    )
    return (
        '<h3>Recent failures</h3>\n<div class="scroll"><table>'
        "<caption>Jobs whose last run failed</caption>"
        '<thead><tr><th scope="col">Job</th><th scope="col">Failures in a row</th>'
        '<th scope="col">Last failure</th><th scope="col">Last success</th>'
        '<th scope="col">Error</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def _schedulers_html(store: Mapping[str, Any], now: float) -> str:
    beats = store["schedulers"]
    if not beats:
        return ""
    rows = []
    for beat in beats:
        if beat["running"]:
            state = '<span class="badge ok">running</span>'
        elif beat["stale"]:
            said = _e(beat["state"])
            state = f'<span class="badge bad">stale</span> <span class="muted">{said}</span>'
        else:
            state = f'<span class="badge warn">{_e(beat["state"])}</span>'
        rows.append(
            f'<tr><th scope="row"><code>{_e(beat["scheduler"])}</code></th>'
            f'<td>{_e(beat["host"])}</td><td class="num">{_e(beat["pid"])}</td>'
            f"<td>{state}</td><td>{_time(beat, 'last_seen', now)}</td></tr>"
        )
    return (
        '<h3>Schedulers</h3>\n<div class="scroll"><table>'
        "<caption>Scheduler processes by heartbeat</caption>"
        '<thead><tr><th scope="col">Scheduler</th><th scope="col">Host</th>'
        '<th scope="col">PID</th><th scope="col">State</th>'
        '<th scope="col">Last heartbeat</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _sources_html(store: Mapping[str, Any], now: float) -> str:
    sources = store["sources"]
    if not sources:
        return ""
    rows = "".join(
        f'<tr><th scope="row">{_e(name)}</th>'
        f"<td>{_source_badge(item['up'])}</td>"
        f"<td>{_time(item, 'last_success', now)}</td>"
        f'<td class="num">{int(item["errors_total"])}</td>'
        f"<td>{_e(item['error']) if item['error'] else _NOTHING}</td>"
        "</tr>"
        for name, item in sources.items()
    )
    return (
        '<h3>Exporter</h3>\n<div class="scroll"><table>'
        "<caption>Reads of each source by the exporter</caption>"
        '<thead><tr><th scope="col">Source</th><th scope="col">Status</th>'
        '<th scope="col">Last success</th><th scope="col">Errors</th>'
        '<th scope="col">Last error</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def _source_badge(up: bool) -> str:
    return '<span class="badge ok">up</span>' if up else '<span class="badge bad">down</span>'


# -- HTTP -------------------------------------------------------------------------------------


def add_routes(
    app: web.Application,
    snapshots: Callable[[], Sequence[StoreSnapshot]],
    options: StatusOptions,
    clock: Callable[[], float] = time.time,
) -> None:
    """``GET /`` (the page) and ``GET /api/status`` (the same as JSON), from the snapshots."""

    Render = Callable[[Mapping[str, Any]], bytes]

    async def respond(render: Render, content_type: str) -> web.Response:
        current = snapshots()
        now = clock()

        def produce() -> bytes:
            return render(build_status(current, now, options))

        if sum(len(snapshot.jobs) for snapshot in current) > THREAD_ABOVE_JOBS:
            body = await asyncio.to_thread(produce)
        else:
            body = produce()
        headers = {**SECURITY_HEADERS, "Content-Type": content_type}
        return web.Response(body=body, headers=headers)

    async def page(_request: web.Request) -> web.Response:
        return await respond(lambda m: render_html(m).encode(), "text/html; charset=utf-8")

    async def api(_request: web.Request) -> web.Response:
        return await respond(render_json, "application/json; charset=utf-8")

    app.router.add_get("/", page)
    app.router.add_get("/api/status", api)
