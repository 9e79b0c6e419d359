"""Build grafana/dashboards/jobstore-exporter.json.

The dashboard is written here as Python so that every query is built from one selector helper
(every selector carries the `job`, `instance`, `jobstore` and `job_id` filters it needs) and the
layout is computed rather than hand-placed. Run it after any change and commit both files:

    python grafana/build_dashboard.py          # rewrite the JSON
    python grafana/build_dashboard.py --check  # exit 1 if the JSON is out of date

tests/test_dashboard.py fails when the committed JSON differs from what this script renders.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "jobstore-exporter.json"

UID = "jobstore-exporter"
TITLE = "APScheduler job store"
SCHEMA_VERSION = 39
# The datasource that grafana/provisioning/datasources/prometheus.yml creates. On an imported
# dashboard whose Grafana has no datasource with this uid, the variable falls back to the default
# Prometheus datasource.
DEFAULT_DATASOURCE_UID = "prometheus"
DEFAULT_DATASOURCE_NAME = "Prometheus"

DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}

Json = dict[str, Any]

# Which dashboard filters apply to a metric follows from its labels in the contract: every
# metric has Prometheus' own `job` and `instance`; all but the build info have `jobstore`;
# per-job metrics have `job_id`.
_NO_JOBSTORE = {"jobstore_exporter_build_info"}
_PER_JOB = {
    "apscheduler_job_info",
    "apscheduler_job_paused",
    "apscheduler_job_next_run_timestamp_seconds",
    "apscheduler_job_next_run_delta_seconds",
    "apscheduler_job_misfire_grace_seconds",
    "apscheduler_job_runs_total",
    "apscheduler_job_run_duration_seconds_bucket",
    "apscheduler_job_run_duration_seconds_sum",
    "apscheduler_job_run_duration_seconds_count",
    "apscheduler_job_last_run_success",
    "apscheduler_job_last_run_duration_seconds",
    "apscheduler_job_last_success_timestamp_seconds",
    "apscheduler_job_last_failure_timestamp_seconds",
    "apscheduler_job_consecutive_failures",
    "apscheduler_job_last_run_delay_seconds",
    "apscheduler_job_running",
    "apscheduler_job_running_since_timestamp_seconds",
    "apscheduler_job_expected_run_timestamp_seconds",
}


def sel(metric: str, *extra: str) -> str:
    """A vector selector with the dashboard's filters, plus `extra` matchers."""
    matchers = ['job=~"$job"', 'instance=~"$instance"']
    if metric not in _NO_JOBSTORE:
        matchers.append('jobstore=~"$jobstore"')
    if metric in _PER_JOB:
        matchers.append('job_id=~"$job_id"')
    matchers.extend(extra)
    return f"{metric}{{{', '.join(matchers)}}}"


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def match(label: str, regex: str) -> str:
    return f'{label}=~"{regex}"'


def rate(metric: str, *extra: str, fn: str = "rate") -> str:
    return f"{fn}({sel(metric, *extra)}[$__rate_interval])"


def per_job(expr: str, by: str = "jobstore, job_id") -> str:
    return f"max by ({by}) ({expr})"


def as_text(expr: str, label: str, texts: dict[int, str]) -> str:
    """Turn a 0/1 gauge into a text label (tables cannot map values per column otherwise)."""
    parts = [
        f'label_replace({expr} == {value}, "{label}", "{text}", "", "")'
        for value, text in texts.items()
    ]
    return " or ".join(parts)


# --- field config pieces --------------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


OK_RED = thresholds((None, "green"), (1, "red"))
NEUTRAL = thresholds((None, "text"))


def value_map(texts: dict[int, tuple[str, str]]) -> list[Json]:
    options = {
        str(value): {"color": color, "index": i, "text": text}
        for i, (value, (text, color)) in enumerate(texts.items())
    }
    return [{"type": "value", "options": options}]


UP_DOWN = value_map({1: ("Up", "green"), 0: ("Down", "red")})


# --- panels ---------------------------------------------------------------------------------


def target(
    ref: str, expr: str, legend: str = "__auto", *, table: bool = False, instant: bool = False
) -> Json:
    t: Json = {"datasource": DS, "editorMode": "code", "expr": expr, "refId": ref}
    if table:
        t.update(format="table", instant=True, range=False)
    else:
        t.update(format="time_series", legendFormat=legend, instant=instant, range=not instant)
    return t


def _targets(
    *exprs: str | tuple[str, str], table: bool = False, instant: bool = False
) -> list[Json]:
    out = []
    for i, item in enumerate(exprs):
        expr, legend = item if isinstance(item, tuple) else (item, "__auto")
        out.append(target(chr(ord("A") + i), expr, legend, table=table, instant=instant))
    return out


def stat(
    title: str,
    description: str,
    *exprs: str | tuple[str, str],
    unit: str,
    steps: Json = NEUTRAL,
    mappings: list[Json] | None = None,
    w: int = 4,
    h: int = 4,
    text_mode: str = "auto",
) -> Json:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": _targets(*exprs, instant=True),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "thresholds"},
                "thresholds": steps,
                "mappings": mappings or [],
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "percentChangeColorMode": "standard",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showPercentChange": False,
            "textMode": text_mode,
            "wideLayout": True,
        },
        "_size": (w, h),
    }


def timeseries(
    title: str,
    description: str,
    *exprs: str | tuple[str, str],
    unit: str,
    w: int = 12,
    h: int = 8,
    bars: bool = False,
    steps: Json = NEUTRAL,
    threshold_line: bool = False,
    min_zero: bool = True,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineInterpolation": "stepAfter" if not bars else "linear",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else 10,
        "gradientMode": "none",
        "showPoints": "never",
        "spanNulls": False,
        "axisPlacement": "auto",
        "stacking": {"mode": "none", "group": "A"},
        "thresholdsStyle": {"mode": "line" if threshold_line else "off"},
    }
    defaults: Json = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "thresholds": steps,
    }
    if min_zero:
        defaults["min"] = 0
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": _targets(*exprs),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "calcs": [],
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "_size": (w, h),
    }


def table(
    title: str,
    description: str,
    columns: list[tuple[str, str, str]],
    *,
    labels: dict[str, str],
    unit: str,
    sort_by: tuple[str, bool] | None = None,
    w: int = 24,
    h: int = 8,
    colored: dict[str, Json] | None = None,
) -> Json:
    """An instant table joining one query per column on their common labels.

    `columns` holds (header, expr, kind) with kind `value` (shown with `unit`), `time` (the
    expression yields Unix milliseconds; the column becomes a time field), `text` (numbers shown
    as plain text, without `unit`) or `hidden` (only contributes its labels). `labels` maps the
    label columns to show to their headers, in order.

    Grafana's table applies one unit to every numeric column unless a column override says
    otherwise, but the published dashboard schema only accepts overrides whose values are
    objects (no `unit` string), so columns of another kind are converted to time or text
    fields instead. `colored` gives columns text colored by thresholds.
    """
    targets = _targets(*(expr for _, expr, _ in columns), table=True)
    conversions = []
    exclude = {"Time": True}
    rename = dict(labels)
    order = {name: i for i, name in enumerate(labels)}
    for (header, _, kind), t in zip(columns, targets, strict=True):
        field = f"Value #{t['refId']}"
        if kind == "hidden":
            exclude[field] = True
            continue
        if kind == "time":
            conversions.append({"targetField": field, "destinationType": "time"})
        elif kind == "text":
            conversions.append({"targetField": field, "destinationType": "string"})
        rename[field] = header
        order[field] = len(order)
    transformations: list[Json] = [{"id": "merge", "options": {}}]
    if conversions:
        transformations.append(
            {"id": "convertFieldType", "options": {"conversions": conversions, "fields": {}}}
        )
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": exclude,
                "indexByName": order,
                "renameByName": rename,
                "includeByName": {},
            },
        }
    )
    overrides = [
        {
            # `byNames` rather than `byName`: the schema wants matcher options to be objects.
            "matcher": {"id": "byNames", "options": {"mode": "include", "names": [header]}},
            "properties": [
                {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                {"id": "thresholds", "value": steps},
            ],
        }
        for header, steps in (colored or {}).items()
    ]
    options: Json = {"cellHeight": "sm", "frameIndex": 0, "showHeader": True}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by[0], "desc": sort_by[1]}]
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "transformations": transformations,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "thresholds"},
                "thresholds": NEUTRAL,
                "custom": {
                    "align": "auto",
                    "inspect": False,
                    "filterable": True,
                },
            },
            "overrides": overrides,
        },
        "options": options,
        "_size": (w, h),
    }


# --- the dashboard --------------------------------------------------------------------------

LAST_SUCCESS = "apscheduler_job_last_success_timestamp_seconds"
NEXT_DELTA = "apscheduler_job_next_run_delta_seconds"
RUNNING_SINCE = "apscheduler_job_running_since_timestamp_seconds"
HEARTBEAT = "apscheduler_scheduler_last_heartbeat_timestamp_seconds"
DURATION = "apscheduler_job_run_duration_seconds"
LAST_POLL = "jobstore_exporter_last_poll_success_timestamp_seconds"
JOB_LABELS = {"jobstore": "Job store", "job_id": "Job ID"}
DAY = 86400


def scheduler_card() -> list[Json]:
    jobs = "apscheduler_jobs"
    return [
        stat(
            "Jobs",
            "Jobs in the job store (active and paused), as the scheduler card counts them.",
            f"sum({sel(jobs)})",
            unit="none",
        ),
        stat(
            "Active jobs",
            "Jobs with a next fire time.",
            f"sum({sel(jobs, eq('state', 'active'))})",
            unit="none",
        ),
        stat(
            "Paused jobs",
            "Jobs without a next fire time (paused).",
            f"sum({sel(jobs, eq('state', 'paused'))})",
            unit="none",
        ),
        stat(
            "Schedulers running",
            "Scheduler processes whose heartbeat is fresh and that "
            "report running. 0 means nothing runs the jobs; more than 1 on one job store "
            "means jobs can run twice (APScheduler 3 does not lock rows).",
            (f"sum by (jobstore) ({sel('apscheduler_scheduler_running')})", "{{jobstore}}"),
            unit="none",
            steps=thresholds((None, "red"), (1, "green"), (2, "orange")),
        ),
        stat(
            "Next run in",
            "Time until the soonest next fire time of the selected jobs; "
            "negative when a job is overdue.",
            f"min({sel(NEXT_DELTA)})",
            unit="s",
            steps=thresholds((None, "red"), (0, "green")),
        ),
        stat(
            "Failing jobs",
            "Jobs whose most recent finished run failed (see the last-run table for which).",
            f"sum({sel('apscheduler_job_consecutive_failures')} > bool 0)",
            unit="none",
            steps=OK_RED,
        ),
        table(
            "Upcoming runs",
            "Every job with its schedule, next fire time and the time until then, soonest "
            "first (the scheduler card's upcoming tasks). Paused jobs have no next run.",
            [
                (
                    "info",
                    per_job(
                        sel("apscheduler_job_info"), "jobstore, job_id, name, trigger, schedule"
                    ),
                    "hidden",
                ),
                (
                    "Next run",
                    f"{per_job(sel('apscheduler_job_next_run_timestamp_seconds'))} * 1000",
                    "time",
                ),
                ("In", per_job(sel(NEXT_DELTA)), "value"),
            ],
            labels={**JOB_LABELS, "name": "Name", "trigger": "Trigger", "schedule": "Schedule"},
            unit="s",
            sort_by=("In", False),
            h=9,
            colored={"In": thresholds((None, "red"), (0, "green"))},
        ),
    ]


def backups() -> list[Json]:
    return [
        stat(
            "Last backup",
            "Result of the latest run of the backup job.",
            (f"min by (jobstore) ({sel('apscheduler_backup_last_run_success')})", "{{jobstore}}"),
            unit="none",
            mappings=value_map({1: ("Succeeded", "green"), 0: ("Failed", "red")}),
            steps=thresholds((None, "red"), (1, "green")),
        ),
        stat(
            "Since last successful backup",
            "Time since the latest successful backup run "
            "ended. The backup runs daily: over 25 hours means one was missed.",
            (
                f"time() - max by (jobstore) "
                f"({sel('apscheduler_backup_last_success_timestamp_seconds')})",
                "{{jobstore}}",
            ),
            unit="s",
            steps=thresholds((None, "green"), (25 * 3600, "orange"), (49 * 3600, "red")),
        ),
        stat(
            "Newest backup file",
            "Size of the newest file in the backup directory; 0 bytes is a failed backup.",
            (
                f"max by (jobstore) ({sel('apscheduler_backup_newest_file_size_bytes')})",
                "{{jobstore}}",
            ),
            unit="bytes",
            steps=thresholds((None, "red"), (1, "green")),
        ),
        stat(
            "Backup files",
            "Backup files present in the backup directory.",
            (f"max by (jobstore) ({sel('apscheduler_backup_files')})", "{{jobstore}}"),
            unit="none",
            steps=thresholds((None, "red"), (1, "green")),
        ),
        stat(
            "Backups total size",
            "All backup files together.",
            (f"max by (jobstore) ({sel('apscheduler_backup_total_size_bytes')})", "{{jobstore}}"),
            unit="bytes",
        ),
        stat(
            "Last backup duration",
            "Duration of the latest backup run.",
            (
                f"max by (jobstore) ({sel('apscheduler_backup_last_duration_seconds')})",
                "{{jobstore}}",
            ),
            unit="s",
        ),
        timeseries(
            "Backup age",
            "Time since the last successful backup run and age of the "
            "newest backup file. A sawtooth that stops dropping is a backup that no "
            "longer happens.",
            (
                f"time() - max by (jobstore) "
                f"({sel('apscheduler_backup_last_success_timestamp_seconds')})",
                "last success {{jobstore}}",
            ),
            (
                f"time() - max by (jobstore) "
                f"({sel('apscheduler_backup_newest_file_timestamp_seconds')})",
                "newest file {{jobstore}}",
            ),
            unit="s",
            steps=thresholds((None, "green"), (25 * 3600, "red")),
            threshold_line=True,
        ),
        timeseries(
            "Backup storage",
            "Size of the newest backup file and of all backup files.",
            (
                f"max by (jobstore) ({sel('apscheduler_backup_newest_file_size_bytes')})",
                "newest file {{jobstore}}",
            ),
            (
                f"max by (jobstore) ({sel('apscheduler_backup_total_size_bytes')})",
                "all files {{jobstore}}",
            ),
            unit="bytes",
        ),
    ]


def runs() -> list[Json]:
    runs_total = "apscheduler_job_runs_total"
    bad_status = match("status", "failed|missed|skipped")
    return [
        timeseries(
            "Run rate by job",
            "Finished runs per minute by job and status.",
            (f"60 * sum by (job_id, status) ({rate(runs_total)})", "{{job_id}} {{status}}"),
            unit="opm",
            w=8,
        ),
        timeseries(
            "Failed, missed and skipped runs by job",
            "Runs that failed, were missed (past their misfire grace) or were skipped "
            "(max_instances reached), per rate interval.",
            (
                f"sum by (job_id, status) ({rate(runs_total, bad_status, fn='increase')})",
                "{{job_id}} {{status}}",
            ),
            unit="none",
            bars=True,
            w=8,
        ),
        timeseries(
            "Failure ratio by job",
            "Share of finished runs that failed. Jobs that run "
            "less often than the rate interval show gaps; see the last-run table for "
            "daily jobs.",
            (
                f"sum by (job_id) ({rate(runs_total, eq('status', 'failed'))}) / "
                f"sum by (job_id) ({rate(runs_total, match('status', 'success|failed'))})",
                "{{job_id}}",
            ),
            unit="percentunit",
            w=8,
        ),
    ]


def durations() -> list[Json]:
    def quantile(q: str) -> tuple[str, str]:
        return (
            f"histogram_quantile({q}, sum by (le, job_id) ({rate(DURATION + '_bucket')}))",
            f"{{{{job_id}}}} p{q[2:].ljust(2, '0')}",
        )

    return [
        timeseries(
            "Run duration percentiles by job",
            "p50, p95 and p99 of run durations "
            "(successful and failed runs) from the duration histogram.",
            quantile("0.5"),
            quantile("0.95"),
            quantile("0.99"),
            unit="s",
        ),
        timeseries(
            "Average run duration by job",
            "Mean duration of the runs that finished in each rate interval.",
            (
                f"sum by (job_id) ({rate(DURATION + '_sum')}) / "
                f"sum by (job_id) ({rate(DURATION + '_count')})",
                "{{job_id}}",
            ),
            unit="s",
        ),
        timeseries(
            "Last run duration by job",
            "Duration of each job's most recent finished "
            "run; steps at every run, so daily jobs show too.",
            (per_job(sel("apscheduler_job_last_run_duration_seconds"), "job_id"), "{{job_id}}"),
            unit="s",
        ),
        timeseries(
            "Start delay by job",
            "Actual start minus scheduled time of each job's most "
            "recent run. Growing delays mean a busy executor or a stalled scheduler.",
            (per_job(sel("apscheduler_job_last_run_delay_seconds"), "job_id"), "{{job_id}}"),
            unit="s",
        ),
    ]


def last_runs() -> list[Json]:
    last_ok = per_job(sel(LAST_SUCCESS))
    return [
        stat(
            "Consecutive failures by job",
            "Failed runs since each job's last success; 0 means the most recent run succeeded.",
            (per_job(sel("apscheduler_job_consecutive_failures"), "job_id"), "{{job_id}}"),
            unit="none",
            steps=OK_RED,
            w=24,
            text_mode="value_and_name",
        ),
        table(
            "Last run per job",
            "Latest values, not rates: for jobs that run daily or less often. Times of the "
            "last success and failure, how long ago the last success was, the last run's "
            "duration and start delay, and the latest fire time the trigger implies (newer "
            "than both last runs and not running: a run was skipped).",
            [
                (
                    "info",
                    per_job(sel("apscheduler_job_info"), "jobstore, job_id, schedule"),
                    "hidden",
                ),
                (
                    "result",
                    as_text(
                        per_job(sel("apscheduler_job_last_run_success")),
                        "last_result",
                        {1: "succeeded", 0: "failed"},
                    ),
                    "hidden",
                ),
                (
                    "Consecutive failures",
                    per_job(sel("apscheduler_job_consecutive_failures")),
                    "text",
                ),
                ("Last success", f"{last_ok} * 1000", "time"),
                ("Since last success", f"time() - {last_ok}", "value"),
                (
                    "Last failure",
                    f"{per_job(sel('apscheduler_job_last_failure_timestamp_seconds'))} * 1000",
                    "time",
                ),
                (
                    "Last duration",
                    per_job(sel("apscheduler_job_last_run_duration_seconds")),
                    "value",
                ),
                ("Start delay", per_job(sel("apscheduler_job_last_run_delay_seconds")), "value"),
                (
                    "Last expected run",
                    f"{per_job(sel('apscheduler_job_expected_run_timestamp_seconds'))} * 1000",
                    "time",
                ),
            ],
            labels={**JOB_LABELS, "schedule": "Schedule", "last_result": "Last result"},
            unit="s",
            sort_by=("Since last success", True),
            h=10,
        ),
    ]


def stuck_overdue() -> list[Json]:
    running = per_job(sel("apscheduler_job_running"))
    delta = per_job(sel(NEXT_DELTA))
    return [
        stat(
            "Overdue jobs",
            "Active jobs whose next fire time is further in the past than "
            "their misfire grace: the scheduler is down or stalled.",
            (f"sum by (jobstore) ({sel('apscheduler_jobs_overdue')})", "{{jobstore}}"),
            unit="none",
            steps=OK_RED,
        ),
        stat(
            "Runs in progress",
            "Runs started and not yet finished.",
            f"sum({sel('apscheduler_job_running')})",
            unit="none",
        ),
        timeseries(
            "Running time of unfinished runs",
            "How long the oldest unfinished run of "
            "each job has been running. A line that keeps climbing past the job's usual "
            "duration is a stuck run.",
            (f"time() - {per_job(sel(RUNNING_SINCE), 'job_id')}", "{{job_id}}"),
            unit="s",
            w=16,
        ),
        table(
            "Past-due jobs",
            "Active jobs whose next fire time has passed, with their misfire grace. Past the "
            "grace they count as overdue; up to one poll interval past due is normal between "
            "polls.",
            [
                ("Past due by", f"-({delta} < 0)", "value"),
                (
                    "Was due at",
                    f"{per_job(sel('apscheduler_job_next_run_timestamp_seconds'))} * 1000 "
                    f"and on (jobstore, job_id) ({delta} < 0)",
                    "time",
                ),
                (
                    "Misfire grace",
                    f"{per_job(sel('apscheduler_job_misfire_grace_seconds'))} "
                    f"and on (jobstore, job_id) ({delta} < 0)",
                    "value",
                ),
            ],
            labels=JOB_LABELS,
            unit="s",
            sort_by=("Past due by", True),
            w=12,
            colored={"Past due by": thresholds((None, "orange"), (60, "red"))},
        ),
        table(
            "Running jobs",
            "Jobs with unfinished runs: since when, for how long, and the last finished run's "
            "duration to compare with.",
            [
                ("Unfinished runs", f"{running} > 0", "text"),
                ("Running since", f"{per_job(sel(RUNNING_SINCE))} * 1000", "time"),
                ("Running for", f"time() - {per_job(sel(RUNNING_SINCE))}", "value"),
                (
                    "Last duration",
                    f"{per_job(sel('apscheduler_job_last_run_duration_seconds'))} "
                    f"and on (jobstore, job_id) ({running} > 0)",
                    "value",
                ),
            ],
            labels=JOB_LABELS,
            unit="s",
            sort_by=("Running for", True),
            w=12,
        ),
    ]


def heartbeats() -> list[Json]:
    by = "jobstore, scheduler"
    last = per_job(sel(HEARTBEAT), by)
    running = per_job(sel("apscheduler_scheduler_running"), by)
    age_steps = thresholds((None, "green"), (120, "orange"), (300, "red"))
    return [
        stat(
            "Scheduler state",
            "Whether each scheduler process reports running with a fresh heartbeat.",
            (running, "{{scheduler}}"),
            unit="none",
            mappings=value_map({1: ("Running", "green"), 0: ("Not running", "red")}),
            steps=thresholds((None, "red"), (1, "green")),
            w=12,
            text_mode="value_and_name",
        ),
        stat(
            "Heartbeat age",
            "Time since each scheduler process last wrote its heartbeat.",
            (f"time() - {last}", "{{scheduler}}"),
            unit="s",
            steps=age_steps,
            w=12,
            text_mode="value_and_name",
        ),
        table(
            "Schedulers",
            "Every scheduler process that writes heartbeats into the job store's database.",
            [
                ("state", as_text(running, "state", {1: "running", 0: "not running"}), "hidden"),
                ("Last heartbeat", f"{last} * 1000", "time"),
                ("Heartbeat age", f"time() - {last}", "value"),
            ],
            labels={"jobstore": "Job store", "scheduler": "Scheduler", "state": "State"},
            unit="s",
            sort_by=("Heartbeat age", True),
            w=12,
            colored={"Heartbeat age": age_steps},
        ),
        timeseries(
            "Heartbeat age over time",
            "Time since each scheduler's last heartbeat.",
            (f"time() - {per_job(sel(HEARTBEAT), 'scheduler')}", "{{scheduler}}"),
            unit="s",
            steps=age_steps,
            threshold_line=True,
        ),
    ]


def exporter_health() -> list[Json]:
    source_by = "jobstore, source"
    return [
        stat(
            "Job store poll",
            "1 if the exporter's last poll of the job store succeeded.",
            (f"min by (jobstore) ({sel('apscheduler_up')})", "{{jobstore}}"),
            unit="none",
            mappings=UP_DOWN,
            steps=thresholds((None, "red"), (1, "green")),
        ),
        stat(
            "History poll",
            "1 if the exporter's last poll of the history table succeeded.",
            (f"min by (jobstore) ({sel('apscheduler_history_up')})", "{{jobstore}}"),
            unit="none",
            mappings=UP_DOWN,
            steps=thresholds((None, "red"), (1, "green")),
        ),
        stat(
            "Undecodable jobs",
            "Job rows whose job_state the exporter could not decode "
            "safely; they are left untouched and not reported per job.",
            (f"sum by (jobstore) ({sel('jobstore_exporter_undecodable_jobs')})", "{{jobstore}}"),
            unit="none",
            steps=OK_RED,
        ),
        stat(
            "Since last successful poll",
            "Time since each source (jobs, history, "
            "heartbeats, backups) was last read successfully.",
            (f"time() - {per_job(sel(LAST_POLL), source_by)}", "{{source}}"),
            unit="s",
            steps=thresholds((None, "green"), (60, "orange"), (300, "red")),
            w=12,
            text_mode="value_and_name",
        ),
        timeseries(
            "Poll duration by source",
            "Duration of the last poll of each source.",
            (
                per_job(sel("jobstore_exporter_poll_duration_seconds"), source_by),
                "{{source}} {{jobstore}}",
            ),
            unit="s",
            w=8,
        ),
        timeseries(
            "Poll errors by source",
            "Failed polls per rate interval.",
            (
                f"sum by ({source_by}) "
                f"({rate('jobstore_exporter_poll_errors_total', fn='increase')})",
                "{{source}} {{jobstore}}",
            ),
            unit="none",
            bars=True,
            w=8,
        ),
        table(
            "Build info",
            "Versions of the exporter and of the libraries it reads the job store with.",
            [
                (
                    "info",
                    "max by (instance, version, python_version, apscheduler_version, "
                    f"sqlalchemy_version) ({sel('jobstore_exporter_build_info')})",
                    "hidden",
                )
            ],
            labels={
                "instance": "Instance",
                "version": "Version",
                "python_version": "Python",
                "apscheduler_version": "APScheduler",
                "sqlalchemy_version": "SQLAlchemy",
            },
            unit="none",
            w=8,
        ),
    ]


ROWS: list[tuple[str, Callable[[], list[Json]]]] = [
    ("Scheduler", scheduler_card),
    ("Backups", backups),
    ("Runs and failures", runs),
    ("Run durations", durations),
    ("Last run per job", last_runs),
    ("Stuck and overdue jobs", stuck_overdue),
    ("Scheduler heartbeats", heartbeats),
    ("Exporter health", exporter_health),
]


def layout(rows: list[tuple[str, list[Json]]]) -> list[Json]:
    """Number the panels and place them left to right, row after row, on the 24-wide grid."""
    panels: list[Json] = []
    y = 0
    next_id = 1
    for title, row_panels in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "id": next_id,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row_panels:
            w, h = panel.pop("_size")
            if x + w > 24:
                y += line_height
                x = 0
                line_height = 0
            panel["id"] = next_id
            next_id += 1
            panel["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            panels.append(panel)
            x += w
            line_height = max(line_height, h)
        y += line_height
    return panels


def query_variable(name: str, label: str, query: str, description: str) -> Json:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "hide": 0,
    }


def variables() -> list[Json]:
    scope = 'job=~"$job", instance=~"$instance"'
    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "description": "The Prometheus that scrapes jobstore-exporter.",
            "query": "prometheus",
            "current": {
                "selected": False,
                "text": DEFAULT_DATASOURCE_NAME,
                "value": DEFAULT_DATASOURCE_UID,
            },
            "options": [],
            "refresh": 1,
            "regex": "",
            "hide": 0,
            "includeAll": False,
            "multi": False,
        },
        query_variable(
            "job",
            "Job",
            "label_values(apscheduler_up, job)",
            "Prometheus scrape job of the exporter.",
        ),
        query_variable(
            "instance",
            "Instance",
            'label_values(apscheduler_up{job=~"$job"}, instance)',
            "Exporter instance (one sidecar).",
        ),
        query_variable(
            "jobstore",
            "Job store",
            f"label_values(apscheduler_up{{{scope}}}, jobstore)",
            "Job store name the exporter was configured with.",
        ),
        query_variable(
            "job_id",
            "Job ID",
            f'label_values(apscheduler_job_info{{{scope}, jobstore=~"$jobstore"}}, job_id)',
            "APScheduler job ids.",
        ),
    ]


def build() -> Json:
    return {
        "id": None,
        "uid": UID,
        "title": TITLE,
        "description": "APScheduler 3 job store, execution history, backups and scheduler "
        "heartbeats as served by jobstore-exporter.",
        "tags": ["apscheduler", "jobstore-exporter"],
        "editable": False,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "weekStart": "",
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables()},
        "panels": layout([(title, make()) for title, make in ROWS]),
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the JSON on disk differs from what this script renders",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(
                f"{OUTPUT} is out of date: run python grafana/build_dashboard.py", file=sys.stderr
            )
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
