"""The sample functions of the metric table: from a snapshot (or a job of it) to samples.

Each is small and pure: it reads a :class:`~exporter.sidecar.metrics.table.Store` (one snapshot at
one render) and, for per-job families, one job and its run statistics, and returns label values and
values. ``families.py`` says which function feeds which family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from exporter.sidecar import health
from exporter.sidecar.metrics.table import (
    Histogram,
    PerJob,
    PerStore,
    Sample,
    Settings,
    Store,
    cumulative,
    flag,
    reads,
)
from exporter.sidecar.snapshot import SOURCES, JobRuns, JobView, SourceStatus, StoreSnapshot
from exporter.sidecar.sources.history import FINISHED

NO_LABELS: tuple[str, ...] = ()


def polled(store: Store) -> bool:
    return store.snap.ever_succeeded


def history_read(store: Store) -> bool:
    return store.snap.history is not None and store.snap.ever_succeeded


@reads("name", "trigger", "schedule", "executor")
def job_info(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    return (((job.name, job.trigger, job.schedule, job.executor), 1.0),)


@reads("next_run_time")
def paused(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    return ((NO_LABELS, flag(job.paused)),)


@reads("next_run_time")
def next_run(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    return () if job.next_run_time is None else ((NO_LABELS, job.next_run_time),)


@reads("misfire_grace_time")
def grace(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    grace = job.misfire_grace_time
    return () if grace is None else ((NO_LABELS, float(grace)),)


def overdue_due(view: JobView, settings: Settings) -> float:
    """From when on ``overdue_seconds`` may concern the job (``health.overdue_from``)."""
    return health.overdue_from(view, settings.default_grace)


def overdue_seconds(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    late = store.overdue.get(job.id)
    return () if late is None else ((NO_LABELS, late),)


@reads("runs")
def job_runs(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    if runs is None:
        return ()  # never ran (no history row): no run series, only job store ones
    return tuple(((status,), float(runs.runs.get(status, 0))) for status in FINISHED)


@reads("runs")
def duration(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    if runs is None or not runs.duration_count:
        return ()
    return ((NO_LABELS, Histogram(cumulative(runs), runs.duration_sum)),)


def run_stat(attr: str) -> PerJob:
    """A per-job gauge read off the job's run statistics; absent when that value is None."""

    @reads("runs")
    def samples(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
        value = getattr(runs, attr) if runs is not None else None
        return () if value is None else ((NO_LABELS, float(value)),)

    return samples


@reads("previous_fire_time")
def expected_run(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    previous = job.previous_fire_time
    return () if previous is None else ((NO_LABELS, previous),)


def delta(store: Store, job: JobView, runs: JobRuns | None) -> Iterable[Sample]:
    return () if job.next_run_time is None else ((NO_LABELS, job.next_run_time - store.now),)


def up(store: Store) -> Iterable[Sample]:
    return (((store.name,), flag(store.snap.up)),)


def history_up(store: Store) -> Iterable[Sample]:
    return (((store.name,), flag(store.snap.source_ok("history"))),)


def jobs(store: Store) -> Iterable[Sample]:
    snap = store.snap
    if not snap.ever_succeeded:
        return ()  # nothing known yet: no job series rather than invented zeros
    paused = store.paused_jobs
    return (((store.name, "active"), len(snap.jobs) - paused), ((store.name, "paused"), paused))


def jobs_overdue(store: Store) -> Iterable[Sample]:
    if not store.snap.ever_succeeded:
        return ()
    return (((store.name,), store.overdue_count),)


def text_replaced(store: Store) -> Iterable[Sample]:
    return (((store.name,), store.text_replaced_jobs),)


def backup_info(store: Store) -> Iterable[Sample]:
    return (((store.name, store.backup_job_id), 1.0),)


def backup_stat(attr: str) -> PerStore:
    """From the run statistics of the store's backup job; absent without them."""

    def samples(store: Store) -> Iterable[Sample]:
        value = getattr(store.backup, attr) if store.backup is not None else None
        return () if value is None else (((store.name,), float(value)),)

    return samples


def backup_file_stat(attr: str) -> PerStore:
    """From the files in backup_dir; absent without backup_dir or before its first read."""

    def samples(store: Store) -> Iterable[Sample]:
        files = store.snap.backup_files
        value = getattr(files, attr) if files is not None else None
        return () if value is None else (((store.name,), float(value)),)

    return samples


def heartbeat(store: Store) -> Iterable[Sample]:
    return (((store.name, beat.scheduler), beat.last_seen) for beat in store.snap.heartbeats)


def scheduler_running(store: Store) -> Iterable[Sample]:
    timeout = store.settings.heartbeat_timeout
    for beat in store.snap.heartbeats:
        fresh = store.now - beat.last_seen <= timeout
        yield (store.name, beat.scheduler), flag(beat.state == "running" and fresh)


def per_source(value: Callable[[SourceStatus], float | None]) -> PerStore:
    """One sample per source read so far, in the order of SOURCES."""

    def samples(store: Store) -> Iterable[Sample]:
        for source in SOURCES:
            status = store.snap.sources.get(source)
            found = value(status) if status is not None else None
            if found is not None:
                yield (store.name, source), found

    return samples


def by_reason(counts: Callable[[StoreSnapshot], Mapping[str, int]]) -> PerStore:
    def samples(store: Store) -> Iterable[Sample]:
        return (((store.name, k), v) for k, v in sorted(counts(store.snap).items()))

    return samples


def store_value(value: Callable[[StoreSnapshot], float]) -> PerStore:
    def samples(store: Store) -> Iterable[Sample]:
        return (((store.name,), value(store.snap)),)

    return samples


def build_info(settings: Settings) -> Iterable[Sample]:
    return ((settings.build_labels, 1.0),)
