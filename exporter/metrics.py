"""Renders snapshots as Prometheus metric families, fresh on every collection.

A custom collector rather than module-level Gauge objects: families are built from the current
snapshots each time, so a job that left the store disappears from every series at once, and no
code path can forget to remove a label set (the classic stale-series bug of exporters that mutate
shared metric objects). ``*_delta_seconds`` is computed at scrape time from the scrape clock.
Every metric is spelled out in full (counters with ``_total``, which prometheus_client drops from
the family name itself), so a name from a dashboard or an alert can be found here.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from exporter import __version__
from exporter.snapshot import SOURCES, JobRuns, StoreSnapshot, overdue_jobs
from exporter.sources.history import BUCKETS, FINISHED

JOBSTORE = ["jobstore"]
PER_JOB = ["jobstore", "job_id"]
DELTA_HELP = "Next fire time minus now at scrape time; negative when overdue"


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class SnapshotCollector(Collector):
    """Yields every metric family of the contract from the latest snapshots."""

    def __init__(
        self,
        snapshots: Callable[[], Iterable[StoreSnapshot]],
        *,
        default_grace: float = 60.0,
        heartbeat_timeout: float = 30.0,
        backup_job_ids: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        part: str = "all",
    ) -> None:
        """``part``: "static" (what only a new poll changes), "clock" (what the scrape time
        changes, but the next-run deltas: see ``render_deltas``), or "all"."""
        self.snapshots = snapshots
        self.default_grace = default_grace
        self.heartbeat_timeout = heartbeat_timeout
        self.backup_job_ids = dict(backup_job_ids or {})
        self.clock = clock
        self.part = part
        self._build_labels = [
            __version__,
            platform.python_version(),
            _dist_version("apscheduler"),
            _dist_version("sqlalchemy"),
        ]

    def collect(self) -> Iterator[Metric]:
        snapshots = list(self.snapshots())
        now = self.clock()
        if self.part in ("all", "static"):
            yield from self._jobstore(snapshots, now)
            yield from self._history(snapshots)
            yield from self._backups(snapshots)
            yield from self._heartbeats(snapshots)
            yield from self._self_metrics(snapshots)
        if self.part == "all":
            yield from self._deltas(snapshots, now)
        if self.part in ("all", "clock"):
            yield from self._liveness(snapshots, now)

    def _jobstore(self, snapshots: list[StoreSnapshot], now: float) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "apscheduler_up", "1 if the last poll of the job store succeeded", labels=JOBSTORE
        )
        jobs = GaugeMetricFamily(
            "apscheduler_jobs", "Jobs in the store by state", labels=["jobstore", "state"]
        )
        info = GaugeMetricFamily(
            "apscheduler_job_info",
            "Always 1; describes a job",
            labels=["jobstore", "job_id", "name", "trigger", "schedule", "executor"],
        )
        paused = GaugeMetricFamily(
            "apscheduler_job_paused", "1 if the job is paused", labels=PER_JOB
        )
        next_run = GaugeMetricFamily(
            "apscheduler_job_next_run_timestamp_seconds",
            "Next fire time (Unix seconds); absent when paused",
            labels=PER_JOB,
        )
        grace = GaugeMetricFamily(
            "apscheduler_job_misfire_grace_seconds",
            "The job's misfire_grace_time; absent when unlimited",
            labels=PER_JOB,
        )
        overdue = GaugeMetricFamily(
            "apscheduler_jobs_overdue",
            "Active jobs whose next fire time is further in the past than their grace",
            labels=JOBSTORE,
        )
        overdue_by = GaugeMetricFamily(
            "apscheduler_job_overdue_seconds",
            "How far past its next fire time an active job was at the last poll; present only "
            "for jobs overdue beyond their grace then",
            labels=PER_JOB,
        )
        for snap in snapshots:
            store = snap.jobstore
            up.add_metric([store], 1.0 if snap.up else 0.0)
            if not snap.ever_succeeded:
                continue  # nothing known yet: no job series rather than invented zeros
            jobs.add_metric([store, "active"], snap.active_jobs)
            jobs.add_metric([store, "paused"], snap.paused_jobs)
            late = overdue_jobs(snap, self.default_grace)
            overdue.add_metric([store], len(late))
            # Judged at poll time like the count above (a job that fires more often than the
            # poll interval never shows here between polls), per job with per-job series only.
            shown = {job.id for job in snap.series_jobs} if snap.selected is not None else None
            for job in late:
                if (shown is None or job.id in shown) and job.next_run_time is not None:
                    overdue_by.add_metric([store, job.id], snap.taken_at - job.next_run_time)
            for job in snap.series_jobs:
                labels = [store, job.id]
                info.add_metric(
                    [store, job.id, job.name, job.trigger, job.schedule, job.executor], 1.0
                )
                paused.add_metric(labels, 1.0 if job.paused else 0.0)
                if job.next_run_time is not None:
                    next_run.add_metric(labels, job.next_run_time)
                if job.misfire_grace_time is not None:
                    grace.add_metric(labels, job.misfire_grace_time)
        yield from (up, jobs, info, paused, next_run, grace, overdue, overdue_by)

    def _deltas(self, snapshots: list[StoreSnapshot], now: float) -> Iterator[Metric]:
        # The served body formats this family directly (render_deltas); this form is for
        # whole-body renders (build_registry), with the same name, help and labels.
        delta = GaugeMetricFamily(
            "apscheduler_job_next_run_delta_seconds", DELTA_HELP, labels=PER_JOB
        )
        for snap in snapshots:
            if not snap.ever_succeeded:
                continue
            for job in snap.series_jobs:
                if job.next_run_time is not None:
                    delta.add_metric([snap.jobstore, job.id], job.next_run_time - now)
        yield delta

    def _history(self, snapshots: list[StoreSnapshot]) -> Iterator[Metric]:
        """Per-job run metrics, for jobs in the store only (a deleted job leaves every series)."""
        up = GaugeMetricFamily(
            "apscheduler_history_up",
            "1 if the last poll of the history table succeeded",
            labels=JOBSTORE,
        )
        runs = CounterMetricFamily(
            "apscheduler_job_runs_total",
            "Finished runs by status, counted since the exporter started",
            labels=["jobstore", "job_id", "status"],
        )
        duration = HistogramMetricFamily(
            "apscheduler_job_run_duration_seconds",
            "Duration of finished runs (success and failed)",
            labels=PER_JOB,
        )
        gauges = {
            name: GaugeMetricFamily(name, text, labels=PER_JOB)
            for name, text in (
                (
                    "apscheduler_job_last_run_success",
                    "1 if the most recent finished run succeeded, 0 if it failed",
                ),
                (
                    "apscheduler_job_last_run_duration_seconds",
                    "Duration of the most recent finished run",
                ),
                (
                    "apscheduler_job_last_success_timestamp_seconds",
                    "End of the most recent successful run",
                ),
                (
                    "apscheduler_job_last_failure_timestamp_seconds",
                    "End of the most recent failed run",
                ),
                ("apscheduler_job_consecutive_failures", "Failed runs since the last success"),
                (
                    "apscheduler_job_last_run_delay_seconds",
                    "Actual start minus scheduled time of the latest run",
                ),
                ("apscheduler_job_running", "Runs started and not yet finished"),
                (
                    "apscheduler_job_running_since_timestamp_seconds",
                    "Start of the oldest unfinished run",
                ),
                (
                    "apscheduler_job_expected_run_timestamp_seconds",
                    "Latest fire time the trigger implies",
                ),
            )
        }
        for snap in snapshots:
            store = snap.jobstore
            up.add_metric([store], 1.0 if snap.source_ok("history") else 0.0)
            expected = gauges["apscheduler_job_expected_run_timestamp_seconds"]
            for job in snap.series_jobs:
                if job.previous_fire_time is not None:
                    expected.add_metric([store, job.id], job.previous_fire_time)
            if snap.history is None or not snap.ever_succeeded:
                continue
            by_job = {item.job_id: item for item in snap.history}
            for job in snap.series_jobs:
                stats = by_job.get(job.id)
                if stats is None:
                    continue  # never ran (no history row): no run series, only job store ones
                labels = [store, job.id]
                for status in FINISHED:
                    runs.add_metric([store, job.id, status], stats.runs.get(status, 0))
                if stats.duration_count:
                    duration.add_metric(labels, _cumulative(stats), stats.duration_sum)
                _add(gauges["apscheduler_job_last_run_success"], labels, stats.last_run_success)
                _add(
                    gauges["apscheduler_job_last_run_duration_seconds"],
                    labels,
                    stats.last_run_duration,
                )
                _add(
                    gauges["apscheduler_job_last_success_timestamp_seconds"],
                    labels,
                    stats.last_success,
                )
                _add(
                    gauges["apscheduler_job_last_failure_timestamp_seconds"],
                    labels,
                    stats.last_failure,
                )
                _add(
                    gauges["apscheduler_job_consecutive_failures"],
                    labels,
                    stats.consecutive_failures,
                )
                _add(gauges["apscheduler_job_last_run_delay_seconds"], labels, stats.last_run_delay)
                _add(gauges["apscheduler_job_running"], labels, stats.running)
                _add(
                    gauges["apscheduler_job_running_since_timestamp_seconds"],
                    labels,
                    stats.running_since,
                )
        yield from (up, runs, duration, *gauges.values())

    def _backups(self, snapshots: list[StoreSnapshot]) -> Iterator[Metric]:
        """Backup results, from the history rows of each store's backup job and backup_dir."""
        # Which job is the backup: rules and panels join on it instead of assuming an id.
        info = GaugeMetricFamily(
            "apscheduler_backup_info",
            "Always 1; job_id is the configured backup_job_id of the job store",
            labels=PER_JOB,
        )
        families = {
            name: GaugeMetricFamily(name, text, labels=JOBSTORE)
            for name, text in (
                ("apscheduler_backup_last_run_success", "1 if the latest backup run succeeded"),
                (
                    "apscheduler_backup_last_success_timestamp_seconds",
                    "End of the latest successful backup",
                ),
                (
                    "apscheduler_backup_last_failure_timestamp_seconds",
                    "End of the latest failed backup",
                ),
                ("apscheduler_backup_last_duration_seconds", "Duration of the latest backup run"),
                ("apscheduler_backup_files", "Backup files present in backup_dir"),
                (
                    "apscheduler_backup_newest_file_timestamp_seconds",
                    "Modification time of the newest backup file",
                ),
                (
                    "apscheduler_backup_newest_file_size_bytes",
                    "Size of the newest backup file (0 is a failed backup)",
                ),
                ("apscheduler_backup_total_size_bytes", "All backup files in backup_dir together"),
                (
                    "apscheduler_backup_untrusted_files",
                    "Files named like backups in backup_dir that the backup job did not write "
                    "and verify, or dated in the future; never counted as backups",
                ),
            )
        }
        for snap in snapshots:
            files = snap.backup_files
            if files is not None:
                _add(families["apscheduler_backup_files"], [snap.jobstore], files.files)
                _add(
                    families["apscheduler_backup_newest_file_timestamp_seconds"],
                    [snap.jobstore],
                    files.newest_timestamp,
                )
                _add(
                    families["apscheduler_backup_newest_file_size_bytes"],
                    [snap.jobstore],
                    files.newest_size,
                )
                _add(
                    families["apscheduler_backup_total_size_bytes"],
                    [snap.jobstore],
                    files.total_size,
                )
                _add(
                    families["apscheduler_backup_untrusted_files"],
                    [snap.jobstore],
                    files.untrusted,
                )
            job_id = self.backup_job_ids.get(snap.jobstore, "database_backup")
            info.add_metric([snap.jobstore, job_id], 1.0)
            stats = next((s for s in snap.history or () if s.job_id == job_id), None)
            if stats is None:
                continue
            labels = [snap.jobstore]
            _add(families["apscheduler_backup_last_run_success"], labels, stats.last_run_success)
            _add(
                families["apscheduler_backup_last_success_timestamp_seconds"],
                labels,
                stats.last_success,
            )
            _add(
                families["apscheduler_backup_last_failure_timestamp_seconds"],
                labels,
                stats.last_failure,
            )
            _add(
                families["apscheduler_backup_last_duration_seconds"],
                labels,
                stats.last_run_duration,
            )
        yield info
        yield from families.values()

    def _heartbeats(self, snapshots: list[StoreSnapshot]) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            "apscheduler_scheduler_last_heartbeat_timestamp_seconds",
            "Last heartbeat of one scheduler process",
            labels=["jobstore", "scheduler"],
        )
        for snap in snapshots:
            for beat in snap.heartbeats:
                last.add_metric([snap.jobstore, beat.scheduler], beat.last_seen)
        yield last

    def _liveness(self, snapshots: list[StoreSnapshot], now: float) -> Iterator[Metric]:
        running = GaugeMetricFamily(
            "apscheduler_scheduler_running",
            "1 if the scheduler reports running and its heartbeat is fresh",
            labels=["jobstore", "scheduler"],
        )
        for snap in snapshots:
            for beat in snap.heartbeats:
                fresh = now - beat.last_seen <= self.heartbeat_timeout
                running.add_metric(
                    [snap.jobstore, beat.scheduler],
                    1.0 if beat.state == "running" and fresh else 0.0,
                )
        yield running

    def _self_metrics(self, snapshots: list[StoreSnapshot]) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "jobstore_exporter_build_info",
            "Always 1; versions of the exporter and what it runs on",
            labels=["version", "python_version", "apscheduler_version", "sqlalchemy_version"],
        )
        build.add_metric(self._build_labels, 1.0)
        duration = GaugeMetricFamily(
            "jobstore_exporter_poll_duration_seconds",
            "Duration of the last poll of each source",
            labels=["jobstore", "source"],
        )
        last_ok = GaugeMetricFamily(
            "jobstore_exporter_last_poll_success_timestamp_seconds",
            "When each source was last read successfully",
            labels=["jobstore", "source"],
        )
        source_up = GaugeMetricFamily(
            "jobstore_exporter_source_up",
            "1 if the last poll of the source succeeded, else 0",
            labels=["jobstore", "source"],
        )
        errors = CounterMetricFamily(
            "jobstore_exporter_poll_errors_total",
            "Failed polls of each source",
            labels=["jobstore", "source"],
        )
        undecodable = GaugeMetricFamily(
            "jobstore_exporter_undecodable_jobs",
            "Rows whose job_state could not be decoded safely",
            labels=JOBSTORE,
        )
        replaced = GaugeMetricFamily(
            "jobstore_exporter_jobs_text_replaced",
            "Jobs whose name, func or executor held characters no encoder accepts, shown as U+FFFD",
            labels=JOBSTORE,
        )
        excluded = GaugeMetricFamily(
            "jobstore_exporter_jobs_excluded",
            "Jobs left without per-job series by the include/exclude patterns or max_jobs",
            labels=["jobstore", "reason"],
        )
        invalid = CounterMetricFamily(
            "jobstore_exporter_history_invalid_rows_total",
            "History rows skipped as malformed (NULLs, unknown status, absurd duration...)",
            labels=["jobstore", "reason"],
        )
        restarts = CounterMetricFamily(
            "jobstore_exporter_poll_loop_restarts_total",
            "Times a store's poll loop failed unexpectedly and was started again",
            labels=JOBSTORE,
        )
        for snap in snapshots:
            restarts.add_metric([snap.jobstore], snap.poll_loop_restarts)
            for source in SOURCES:
                status = snap.sources.get(source)
                if status is None:
                    continue
                labels = [snap.jobstore, source]
                duration.add_metric(labels, status.duration)
                source_up.add_metric(labels, 1.0 if status.ok else 0.0)
                errors.add_metric(labels, status.errors_total)
                if status.last_success is not None:
                    last_ok.add_metric(labels, status.last_success)
            undecodable.add_metric([snap.jobstore], snap.undecodable)
            replaced.add_metric([snap.jobstore], sum(job.text_replaced for job in snap.jobs))
            for reason, count in sorted(snap.excluded.items()):
                excluded.add_metric([snap.jobstore, reason], count)
            for reason, count in sorted(snap.invalid_history_rows.items()):
                invalid.add_metric([snap.jobstore, reason], count)
        yield from (
            build,
            duration,
            source_up,
            last_ok,
            errors,
            undecodable,
            replaced,
            excluded,
            invalid,
            restarts,
        )


def _cumulative(stats: JobRuns) -> list[tuple[str, float]]:
    """Per-bucket counts to the cumulative ``le`` buckets Prometheus expects."""
    total = 0
    buckets = []
    for bound, count in zip((*BUCKETS, math.inf), stats.bucket_counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound == math.inf else repr(bound), float(total)))
    return buckets


def _add(family: GaugeMetricFamily, labels: list[str], value: float | bool | None) -> None:
    if value is not None:
        family.add_metric(labels, float(value))


def build_registries(
    make: Callable[[str], SnapshotCollector],
) -> tuple[CollectorRegistry, CollectorRegistry]:
    """The static registry (our families that only a poll changes) and the clock registry
    (families the scrape time changes, plus the standard ``process_*`` metrics)."""
    static = CollectorRegistry(auto_describe=False)
    static.register(make("static"))
    clock = CollectorRegistry(auto_describe=False)
    clock.register(make("clock"))
    ProcessCollector(registry=clock)
    return static, clock


def build_registry(collector: SnapshotCollector) -> CollectorRegistry:
    """One registry with everything ``collector`` yields: a whole body in one render."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render_deltas(snapshots: Iterable[StoreSnapshot], now: float) -> bytes:
    """``apscheduler_job_next_run_delta_seconds``, formatted directly.

    The one family that changes with every scrape second has a line per job; the generic
    encoder spends ~9 µs a line on it, a direct format well under one. The lines are the same in
    the text format and OpenMetrics (a gauge, label values escaped alike).
    """
    name = "apscheduler_job_next_run_delta_seconds"
    lines = [f"# HELP {name} {DELTA_HELP}\n# TYPE {name} gauge\n"]
    for snap in snapshots:
        if not snap.ever_succeeded:
            continue
        store = _escape(snap.jobstore)
        for job in snap.series_jobs:
            if job.next_run_time is not None:
                value = job.next_run_time - now
                lines.append(f'{name}{{jobstore="{store}",job_id="{_escape(job.id)}"}} {value!r}\n')
    return "".join(lines).encode()


def _escape(value: str) -> str:
    """Label value escaping of both exposition formats: backslash, double quote, newline."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value
