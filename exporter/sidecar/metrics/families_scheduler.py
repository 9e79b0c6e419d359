"""The scheduler's families of ``/metrics``: the job store, the run history, the scheduler
processes' heartbeats, and the next-run deltas formatted at scrape time.

Declared as data (see ``table.py``); ``families.py`` puts them in body order.
"""

from __future__ import annotations

from exporter.sidecar.metrics import samples
from exporter.sidecar.metrics.table import HISTORY, JOB, JOBS, LIVENESS, STORE, Family

_RUN_GAUGES = (
    (
        "apscheduler_job_last_run_success",
        "last_run_success",
        "1 if the most recent finished run succeeded, 0 if it failed",
        "1 if the most recent finished run succeeded, 0 if it failed",
    ),
    (
        "apscheduler_job_last_run_duration_seconds",
        "last_run_duration",
        "Duration of the most recent finished run",
        "duration of the most recent finished run",
    ),
    (
        "apscheduler_job_last_success_timestamp_seconds",
        "last_success",
        "End of the most recent successful run",
        "end of the most recent successful run",
    ),
    (
        "apscheduler_job_last_failure_timestamp_seconds",
        "last_failure",
        "End of the most recent failed run",
        "end of the most recent failed run",
    ),
    (
        "apscheduler_job_consecutive_failures",
        "consecutive_failures",
        "Failed runs since the last success",
        "failed runs since the last success (0 after a success)",
    ),
    (
        "apscheduler_job_last_run_delay_seconds",
        "last_run_delay",
        "Actual start minus scheduled time of the latest run",
        "actual start minus scheduled time of the most recent run",
    ),
    (
        "apscheduler_job_running",
        "running",
        "Runs started and not yet finished",
        "runs started and not yet finished",
    ),
    (
        "apscheduler_job_running_since_timestamp_seconds",
        "running_since",
        "Start of the oldest unfinished run",
        "start of the oldest unfinished run; absent when none",
    ),
)


JOB_STORE: tuple[Family, ...] = (
    Family(
        "apscheduler_up",
        "gauge",
        "1 if the last poll of the job store succeeded",
        STORE,
        "store",
        JOBS,
        "1 if the last poll of the job store succeeded, else 0",
        per_store=samples.up,
    ),
    Family(
        "apscheduler_jobs",
        "gauge",
        "Jobs in the store by state",
        ("jobstore", "state"),
        "store",
        JOBS,
        "number of jobs; state = `active` or `paused`",
        per_store=samples.jobs,
    ),
    Family(
        "apscheduler_job_info",
        "gauge",
        "Always 1; describes a job",
        ("jobstore", "job_id", "name", "trigger", "schedule", "executor"),
        "job",
        JOBS,
        "always 1; trigger = `cron`, `interval`, `date`, `and`, `or` or `other`; schedule = "
        "human text such as `Daily at 02:00 UTC` (see [schedules.md](schedules.md))",
        per_job=samples.job_info,
        when=samples.polled,
    ),
    Family(
        "apscheduler_job_paused",
        "gauge",
        "1 if the job is paused",
        JOB,
        "job",
        JOBS,
        "1 if paused",
        per_job=samples.paused,
        when=samples.polled,
    ),
    Family(
        "apscheduler_job_next_run_timestamp_seconds",
        "gauge",
        "Next fire time (Unix seconds); absent when paused",
        JOB,
        "job",
        JOBS,
        "next fire time; absent when paused",
        per_job=samples.next_run,
        when=samples.polled,
    ),
    Family(
        "apscheduler_job_misfire_grace_seconds",
        "gauge",
        "The job's misfire_grace_time; absent when unlimited",
        JOB,
        "job",
        JOBS,
        "the job's `misfire_grace_time` (absent when unlimited)",
        per_job=samples.grace,
        when=samples.polled,
    ),
    Family(
        "apscheduler_jobs_overdue",
        "gauge",
        "Active jobs whose next fire time is further in the past than their grace",
        STORE,
        "store",
        JOBS,
        "active jobs whose next fire time is further in the past than their grace",
        per_store=samples.jobs_overdue,
    ),
    Family(
        "apscheduler_job_overdue_seconds",
        "gauge",
        "How far past its next fire time an active job was at the last poll; present only "
        "for jobs overdue beyond their grace then",
        JOB,
        "job",
        JOBS,
        "present only for active jobs that were overdue at the last poll (beyond their grace): "
        "how far past the next fire time the job was then. A job that fires more often than "
        "the poll interval never shows here between polls; the dashboard's *Past-due jobs* "
        "panel reads it",
        per_job=samples.overdue_seconds,
        due=samples.overdue_due,
        when=samples.polled,
        volatile=True,
    ),
)
"""What a poll of the job store changes (static part)."""

RUN_HISTORY: tuple[Family, ...] = (
    Family(
        "apscheduler_history_up",
        "gauge",
        "1 if the last poll of the history table succeeded",
        STORE,
        "store",
        HISTORY,
        "1 if the last poll of the history table succeeded",
        per_store=samples.history_up,
    ),
    Family(
        "apscheduler_job_runs_total",
        "counter",
        "Finished runs by status, counted since the exporter started",
        ("jobstore", "job_id", "status"),
        "job",
        HISTORY,
        "finished runs; status = `success`, `failed`, `missed`, `skipped` (max instances reached)",
        per_job=samples.job_runs,
        when=samples.history_read,
    ),
    Family(
        "apscheduler_job_run_duration_seconds",
        "histogram",
        "Duration of finished runs (success and failed)",
        JOB,
        "job",
        HISTORY,
        "duration of finished runs (success and failed); buckets 0.01, 0.05, 0.1, 0.5, 1, 5, "
        "10, 30, 60, 300, 900, 1800, 3600, 14400 s; only for jobs with a measured run",
        per_job=samples.duration,
        when=samples.history_read,
    ),
    *(
        Family(
            name,
            "gauge",
            text,
            JOB,
            "job",
            HISTORY,
            doc,
            per_job=samples.run_stat(attr),
            when=samples.history_read,
        )
        for name, attr, text, doc in _RUN_GAUGES
    ),
    Family(
        "apscheduler_job_expected_run_timestamp_seconds",
        "gauge",
        "Latest fire time the trigger implies",
        JOB,
        "job",
        HISTORY,
        "the latest fire time the trigger implies at or before the poll; compare with "
        "`last_*_timestamp` to see a run that never happened. Absent for a job whose trigger is "
        "too costly to walk (over 0.5 s, see [security.md](security.md#rows-from-the-database))",
        per_job=samples.expected_run,
    ),
)
"""What a read of the run history changes (static part)."""

LIVENESS_STATIC: tuple[Family, ...] = (
    Family(
        "apscheduler_scheduler_last_heartbeat_timestamp_seconds",
        "gauge",
        "Last heartbeat of one scheduler process",
        ("jobstore", "scheduler"),
        "store",
        LIVENESS,
        "last heartbeat of one scheduler process (`scheduler` = `host:pid` unless set)",
        per_store=samples.heartbeat,
    ),
)
"""The scheduler processes' last heartbeats (static part)."""

DELTAS: tuple[Family, ...] = (
    Family(
        "apscheduler_job_next_run_delta_seconds",
        "gauge",
        "Next fire time minus now at scrape time; negative when overdue",
        JOB,
        "job",
        JOBS,
        "next fire time minus now, computed at scrape time; negative when overdue",
        per_job=samples.delta,
        when=samples.polled,
        part="deltas",
    ),
)
"""Next fire time minus now: formatted directly at scrape time (deltas part)."""

LIVENESS_CLOCK: tuple[Family, ...] = (
    Family(
        "apscheduler_scheduler_running",
        "gauge",
        "1 if the scheduler reports running and its heartbeat is fresh",
        ("jobstore", "scheduler"),
        "store",
        LIVENESS,
        "1 if it reports running and its heartbeat is younger than `heartbeat_timeout` (30 s) "
        "at scrape time",
        per_store=samples.scheduler_running,
        part="clock",
    ),
)
"""Whether each scheduler process is running, judged at scrape time (clock part)."""
