"""The immutable picture of one job store that every renderer reads.

Data flows one way: sources read the database during a poll and the poller assembles a new
:class:`StoreSnapshot`; the metrics endpoint, the CLI and the status page only ever read the latest
one. Nothing here is mutated after construction, so a scrape can never see half a poll and never
keeps a stale series alive: a job missing from the new snapshot is simply not rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

SOURCES = ("jobs", "history", "heartbeats", "backups")


@dataclass(frozen=True, slots=True)
class JobView:
    """One row of the job store as the sidecar understood it."""

    id: str
    next_run_time: float | None  # Unix seconds; None when paused
    decoded: bool  # False when job_state could not be decoded safely
    name: str = ""
    func: str = ""
    executor: str = ""
    trigger: str = "other"  # cron | interval | date | and | or | other
    schedule: str = ""
    misfire_grace_time: float | None = None  # None = unlimited
    previous_fire_time: float | None = None  # latest fire time the trigger implied at poll time
    text_replaced: bool = False  # text of the row no encoder accepts was replaced (U+FFFD)

    @property
    def paused(self) -> bool:
        return self.next_run_time is None


@dataclass(frozen=True, slots=True)
class JobRuns:
    """Run statistics of one job from the history table."""

    job_id: str
    runs: Mapping[str, int]  # finished runs by status, counted since the exporter started
    bucket_counts: tuple[int, ...]  # per bucket of history.BUCKETS, not cumulative; last is +Inf
    duration_sum: float
    duration_count: int
    last_run_success: bool | None = None
    last_run_duration: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    last_run_delay: float | None = None
    running: int = 0
    running_since: float | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The latest heartbeat of one scheduler process."""

    scheduler: str
    host: str
    pid: int | None
    state: str
    last_seen: float


@dataclass(frozen=True, slots=True)
class BackupFiles:
    """The finished backup files in ``backup_dir`` (named by the kit's pattern)."""

    files: int
    newest_timestamp: float | None  # modification time of the newest file; None without files
    newest_size: int | None  # its size in bytes (0 bytes is a failed backup)
    total_size: int
    untrusted: int = 0  # files named like backups the backup job did not write (or in the future)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How the last read of one source went."""

    ok: bool
    duration: float = 0.0
    last_success: float | None = None
    errors_total: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """Everything known about one job store after a poll."""

    jobstore: str
    taken_at: float  # Unix seconds when the poll finished
    jobs: tuple[JobView, ...] = ()
    undecodable: int = 0
    ever_succeeded: bool = False
    sources: Mapping[str, SourceStatus] = field(default_factory=lambda: MappingProxyType({}))
    history: tuple[JobRuns, ...] | None = None  # None until the history table was read once
    invalid_history_rows: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    heartbeats: tuple[Heartbeat, ...] = ()
    selected: tuple[JobView, ...] | None = None  # jobs with per-job series; None = all
    excluded: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    backup_files: BackupFiles | None = None  # None without backup_dir or before its first read
    poll_loop_restarts: int = 0  # times this store's poll loop failed and was started again

    @property
    def series_jobs(self) -> tuple[JobView, ...]:
        """The jobs that get per-job series (see exporter.sidecar.selection)."""
        return self.jobs if self.selected is None else self.selected

    @property
    def up(self) -> bool:
        return self.source_ok("jobs")

    def source_ok(self, name: str) -> bool:
        status = self.sources.get(name)
        return status is not None and status.ok

    @property
    def active_jobs(self) -> int:
        return sum(1 for job in self.jobs if not job.paused)

    @property
    def paused_jobs(self) -> int:
        return sum(1 for job in self.jobs if job.paused)

    def with_source(self, name: str, status: SourceStatus) -> StoreSnapshot:
        """A copy with one source's status replaced."""
        return replace(self, sources=MappingProxyType({**self.sources, name: status}))
