"""The metric families of ``/metrics``: the one place a metric is named, typed and described.

Add a metric by adding a :class:`~exporter.metric_table.Family` here, then run
``python -m exporter.metric_docs`` (rewrites the reference in docs/metrics.md) and add its line to
``tests/metrics_golden.txt``; the tests fail until code, docs and golden list agree. The order
of :data:`FAMILIES` is the order of the served body (see ``metric_table.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from exporter import metric_samples as samples
from exporter.metric_table import Family, flag

JOB = ("jobstore", "job_id")
STORE = ("jobstore",)
SOURCE = ("jobstore", "source")


# --- the table ----------------------------------------------------------------------------------

_JOBS = "jobstore"
_HISTORY = "history"
_BACKUP_RUNS = "backup-runs"
_BACKUP_FILES = "backup-files"
_LIVENESS = "liveness"
_EXPORTER = "exporter"

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

_BACKUP_RUN_GAUGES = (
    (
        "apscheduler_backup_last_run_success",
        "last_run_success",
        "1 if the latest backup run succeeded",
        "1 if the latest backup run succeeded",
    ),
    (
        "apscheduler_backup_last_success_timestamp_seconds",
        "last_success",
        "End of the latest successful backup",
        "end of the latest successful backup",
    ),
    (
        "apscheduler_backup_last_failure_timestamp_seconds",
        "last_failure",
        "End of the latest failed backup",
        "end of the latest failed backup",
    ),
    (
        "apscheduler_backup_last_duration_seconds",
        "last_run_duration",
        "Duration of the latest backup run",
        "duration of the latest backup run",
    ),
)

_BACKUP_FILE_GAUGES = (
    (
        "apscheduler_backup_files",
        "files",
        "Backup files present in backup_dir",
        "backup files present in `backup_dir` (the good ones: written and verified by the backup "
        "job, see [backup.md](backup.md#the-manifest-which-files-are-backups))",
    ),
    (
        "apscheduler_backup_newest_file_timestamp_seconds",
        "newest_timestamp",
        "Modification time of the newest backup file",
        "modification time of the newest file there",
    ),
    (
        "apscheduler_backup_newest_file_size_bytes",
        "newest_size",
        "Size of the newest backup file (0 is a failed backup)",
        "its size (0 bytes is a failed backup)",
    ),
    (
        "apscheduler_backup_total_size_bytes",
        "total_size",
        "All backup files in backup_dir together",
        "all backup files together",
    ),
)


def _store_gauges(
    group: str, rows: tuple[tuple[str, str, str, str], ...], stat: Callable[[str], samples.PerStore]
) -> list[Family]:
    """Per-store gauges that read one attribute each (backup run results, backup files)."""
    return [
        Family(name, "gauge", text, STORE, "store", group, doc, per_store=stat(attr))
        for name, attr, text, doc in rows
    ]


FAMILIES: tuple[Family, ...] = (
    # --- the job store (static part) ---
    Family(
        "apscheduler_up",
        "gauge",
        "1 if the last poll of the job store succeeded",
        STORE,
        "store",
        _JOBS,
        "1 if the last poll of the job store succeeded, else 0",
        per_store=samples.up,
    ),
    Family(
        "apscheduler_jobs",
        "gauge",
        "Jobs in the store by state",
        ("jobstore", "state"),
        "store",
        _JOBS,
        "number of jobs; state = `active` or `paused`",
        per_store=samples.jobs,
    ),
    Family(
        "apscheduler_job_info",
        "gauge",
        "Always 1; describes a job",
        ("jobstore", "job_id", "name", "trigger", "schedule", "executor"),
        "job",
        _JOBS,
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
        _JOBS,
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
        _JOBS,
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
        _JOBS,
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
        _JOBS,
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
        _JOBS,
        "present only for active jobs that were overdue at the last poll (beyond their grace): "
        "how far past the next fire time the job was then. A job that fires more often than "
        "the poll interval never shows here between polls; the dashboard's *Past-due jobs* "
        "panel reads it",
        per_job=samples.overdue_seconds,
        due=samples.overdue_due,
        when=samples.polled,
        volatile=True,
    ),
    # --- execution history (static part) ---
    Family(
        "apscheduler_history_up",
        "gauge",
        "1 if the last poll of the history table succeeded",
        STORE,
        "store",
        _HISTORY,
        "1 if the last poll of the history table succeeded",
        per_store=samples.history_up,
    ),
    Family(
        "apscheduler_job_runs_total",
        "counter",
        "Finished runs by status, counted since the exporter started",
        ("jobstore", "job_id", "status"),
        "job",
        _HISTORY,
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
        _HISTORY,
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
            _HISTORY,
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
        _HISTORY,
        "the latest fire time the trigger implies at or before the poll; compare with "
        "`last_*_timestamp` to see a run that never happened. Absent for a job whose trigger is "
        "too costly to walk (over 0.5 s, see [security.md](security.md#rows-from-the-database))",
        per_job=samples.expected_run,
    ),
    # --- backups (static part) ---
    Family(
        "apscheduler_backup_info",
        "gauge",
        "Always 1; job_id is the configured backup_job_id of the job store",
        JOB,
        "store",
        _BACKUP_RUNS,
        "always 1; `job_id` = the store's `backup_job_id`, so alert rules and panels join on "
        "it instead of assuming `database_backup`",
        per_store=samples.backup_info,
    ),
    *_store_gauges(_BACKUP_RUNS, _BACKUP_RUN_GAUGES, samples.backup_stat),
    *_store_gauges(_BACKUP_FILES, _BACKUP_FILE_GAUGES, samples.backup_file_stat),
    Family(
        "apscheduler_backup_untrusted_files",
        "gauge",
        "Files named like backups in backup_dir that the backup job did not write "
        "and verify, or dated in the future; never counted as backups",
        STORE,
        "store",
        _BACKUP_FILES,
        "files named like backups that the backup job did not write and verify (or changed "
        "since, or dated in the future); never counted as backups",
        per_store=samples.backup_file_stat("untrusted"),
        addition=True,
    ),
    # --- scheduler liveness (static part) ---
    Family(
        "apscheduler_scheduler_last_heartbeat_timestamp_seconds",
        "gauge",
        "Last heartbeat of one scheduler process",
        ("jobstore", "scheduler"),
        "store",
        _LIVENESS,
        "last heartbeat of one scheduler process (`scheduler` = `host:pid` unless set)",
        per_store=samples.heartbeat,
    ),
    # --- the exporter itself (static part) ---
    Family(
        "jobstore_exporter_build_info",
        "gauge",
        "Always 1; versions of the exporter and what it runs on",
        ("version", "python_version", "apscheduler_version", "sqlalchemy_version"),
        "exporter",
        _EXPORTER,
        "always 1",
        once=samples.build_info,
    ),
    Family(
        "jobstore_exporter_poll_duration_seconds",
        "gauge",
        "Duration of the last poll of each source",
        SOURCE,
        "store",
        _EXPORTER,
        "duration of the last poll; source = `jobs`, `history`, `heartbeats`, `backups`",
        per_store=samples.per_source(lambda status: status.duration),
    ),
    Family(
        "jobstore_exporter_source_up",
        "gauge",
        "1 if the last poll of the source succeeded, else 0",
        SOURCE,
        "store",
        _EXPORTER,
        "1 if the last poll of that source succeeded, else 0 (for `jobs` the same as "
        "`apscheduler_up`, for `history` as `apscheduler_history_up`); alert rules use it to "
        "stay quiet about what a failing source can no longer tell",
        per_store=samples.per_source(lambda status: flag(status.ok)),
        addition=True,
    ),
    Family(
        "jobstore_exporter_last_poll_success_timestamp_seconds",
        "gauge",
        "When each source was last read successfully",
        SOURCE,
        "store",
        _EXPORTER,
        "when that source was last read successfully",
        per_store=samples.per_source(lambda status: status.last_success),
    ),
    Family(
        "jobstore_exporter_poll_errors_total",
        "counter",
        "Failed polls of each source",
        SOURCE,
        "store",
        _EXPORTER,
        "failed polls",
        per_store=samples.per_source(lambda status: status.errors_total),
    ),
    Family(
        "jobstore_exporter_undecodable_jobs",
        "gauge",
        "Rows whose job_state could not be decoded safely",
        STORE,
        "store",
        _EXPORTER,
        "rows whose job_state could not be decoded safely",
        per_store=samples.store_value(lambda snap: snap.undecodable),
    ),
    Family(
        "jobstore_exporter_jobs_text_replaced",
        "gauge",
        "Jobs whose name, func or executor held characters no encoder accepts, shown as U+FFFD",
        STORE,
        "store",
        _EXPORTER,
        "jobs whose `name`, `func` or `executor` held characters no encoder accepts (lone "
        "surrogates, which pickled text can carry); they are shown as U+FFFD "
        "(`\N{REPLACEMENT CHARACTER}`)",
        per_store=samples.text_replaced,
        addition=True,
    ),
    Family(
        "jobstore_exporter_jobs_excluded",
        "gauge",
        "Jobs left without per-job series by the include/exclude patterns or max_jobs",
        ("jobstore", "reason"),
        "store",
        _EXPORTER,
        "jobs without per-job series; reason = `filter` (include/exclude patterns) or `limit` "
        "(`max_jobs`)",
        per_store=samples.by_reason(lambda snap: snap.excluded),
        addition=True,
    ),
    Family(
        "jobstore_exporter_history_invalid_rows_total",
        "counter",
        "History rows skipped as malformed (NULLs, unknown status, absurd duration...)",
        ("jobstore", "reason"),
        "store",
        _EXPORTER,
        "history rows skipped as malformed, since the exporter started",
        per_store=samples.by_reason(lambda snap: snap.invalid_history_rows),
        addition=True,
    ),
    Family(
        "jobstore_exporter_poll_loop_restarts_total",
        "counter",
        "Times a store's poll loop failed unexpectedly and was started again",
        STORE,
        "store",
        _EXPORTER,
        "times the store's poll loop failed unexpectedly (logged with its traceback) and was "
        "started again; any increase is a bug worth reporting",
        per_store=samples.store_value(lambda snap: snap.poll_loop_restarts),
        addition=True,
    ),
    # --- formatted at scrape time (deltas part) ---
    Family(
        "apscheduler_job_next_run_delta_seconds",
        "gauge",
        "Next fire time minus now at scrape time; negative when overdue",
        JOB,
        "job",
        _JOBS,
        "next fire time minus now, computed at scrape time; negative when overdue",
        per_job=samples.delta,
        when=samples.polled,
        part="deltas",
    ),
    # --- what the scrape time changes (clock part) ---
    Family(
        "apscheduler_scheduler_running",
        "gauge",
        "1 if the scheduler reports running and its heartbeat is fresh",
        ("jobstore", "scheduler"),
        "store",
        _LIVENESS,
        "1 if it reports running and its heartbeat is younger than `heartbeat_timeout` (30 s) "
        "at scrape time",
        per_store=samples.scheduler_running,
        part="clock",
    ),
    # --- counted by the body cache itself (render.py gives the samples) ---
    Family(
        "jobstore_exporter_render_errors_total",
        "counter",
        "Renders of a /metrics part that failed; the last good part is served meanwhile",
        ("part",),
        "exporter",
        _EXPORTER,
        "renders of a part of the `/metrics` body that failed since the exporter started; part "
        "= `static` (what a poll changes) or `clock` (what the scrape time changes). Served in "
        "the clock part, so it is visible while the static part fails; see "
        "[Freshness](#freshness)",
        part="render",
        addition=True,
    ),
)

BY_NAME: dict[str, Family] = {item.name: item for item in FAMILIES}


def family(name: str) -> Family:
    """The family called ``name`` (as queried: counters with ``_total``)."""
    return BY_NAME[name]
