"""What a metric family is: the data every family of ``/metrics`` is declared as.

A family's name, type, help, labels, scope (per job, per store, or once per body) and the
function from a snapshot to its samples are written once, in the ``families_*.py`` modules
(one per concern: the scheduler's, the backups', the exporter's own), which ``families.py``
puts in body order. The ``prometheus_client`` collector (``collector.py``), the per-job encoder
(``store.py``), the generated reference in ``docs/metrics.md`` (``docs.py``) and the golden
list the tests hold the code to are all read off this table, so a metric cannot be spelled two
ways.

The order of ``families.FAMILIES`` is the order of the served body: the families a poll
changes (``static``), the next-run deltas (``deltas``, formatted per scrape), those the scrape
time changes (``clock``), and the render error counter that ``render.py`` fills in
(``render``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, NamedTuple

from exporter.sidecar import health
from exporter.sidecar.snapshot import JobRuns, JobView, StoreSnapshot
from exporter.sidecar.sources.history_tally import BUCKETS

JOB = ("jobstore", "job_id")
STORE = ("jobstore",)
SOURCE = ("jobstore", "source")
"""The label sets most families share."""

JOBS, HISTORY, BACKUP_RUNS, BACKUP_FILES = "jobstore", "history", "backup-runs", "backup-files"
LIVENESS, EXPORTER = "liveness", "exporter"
"""The sections of the reference in docs/metrics.md."""

Kind = Literal["gauge", "counter", "histogram"]
Scope = Literal["job", "store", "exporter"]
Part = Literal["static", "deltas", "clock", "render"]


class Histogram(NamedTuple):
    """A histogram sample's value: cumulative ``(le, count)`` buckets ending in +Inf, and sum."""

    buckets: tuple[tuple[str, float], ...]
    sum: float


Value = float | Histogram
Sample = tuple[tuple[str, ...], Value]
"""Label values and value. Per-job families give only the values after jobstore and job_id."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What families read beside the snapshots: configuration and the build's versions."""

    default_grace: float = 60.0
    heartbeat_timeout: float = 30.0
    backup_job_ids: Mapping[str, str] = field(default_factory=dict)
    build_labels: tuple[str, ...] = ()


_NEXT_RUN_TIME = operator.attrgetter("next_run_time")
_TEXT_REPLACED = operator.attrgetter("text_replaced")


def count_paused(jobs: Iterable[JobView]) -> int:
    """Jobs without a next fire time (counted in C: a store may hold 100k jobs)."""
    return list(map(_NEXT_RUN_TIME, jobs)).count(None)


def count_text_replaced(jobs: Iterable[JobView]) -> int:
    """Jobs whose row held text no encoder accepts (replaced when decoded)."""
    return sum(map(_TEXT_REPLACED, jobs))


def overdue_by_id(
    jobs: Iterable[JobView], taken_at: float, default_grace: float
) -> dict[str, float]:
    """The jobs of ``jobs`` overdue at ``taken_at``, by id, with how far past their next fire
    time (``health``'s rule)."""
    return {job.id: late for job, late in health.overdue(jobs, taken_at, default_grace)}


class Store:
    """One snapshot at one render, with what several families derive from it computed once."""

    def __init__(self, snap: StoreSnapshot, settings: Settings, now: float) -> None:
        self.snap = snap
        self.name = snap.jobstore
        self.settings = settings
        self.now = now

    @cached_property
    def runs(self) -> dict[str, JobRuns]:
        return {item.job_id: item for item in self.snap.history or ()}

    def reuse_runs(self, runs: dict[str, JobRuns]) -> None:
        """Take ``runs`` as made from this snapshot's history by an earlier render: the history
        source hands out the same tuple while no run changed, and a store's render should not
        pass over every job with history to find that out."""
        self.__dict__["runs"] = runs

    @cached_property
    def backup_job_id(self) -> str:
        return self.settings.backup_job_ids.get(self.name, "database_backup")

    @cached_property
    def backup(self) -> JobRuns | None:
        return self.runs.get(self.backup_job_id)

    @cached_property
    def paused_jobs(self) -> int:
        return count_paused(self.snap.jobs)

    @cached_property
    def text_replaced_jobs(self) -> int:
        return count_text_replaced(self.snap.jobs)

    @cached_property
    def overdue(self) -> dict[str, float]:
        """Active jobs overdue at the poll, by id, with how far past their next fire time
        (``health``'s rule, in one pass): read by the count and by each job's overdue seconds."""
        return overdue_by_id(self.snap.jobs, self.snap.taken_at, self.settings.default_grace)

    @property
    def overdue_count(self) -> int:
        return len(self.overdue)

    def counted(self, paused: int, text_replaced: int, overdue: dict[str, float]) -> None:
        """Take what is otherwise a pass over every job from a caller that keeps it poll by poll
        (the metric store, which looks only at the jobs that changed, and asks the overdue rule
        only of the jobs that may be overdue): at 10k jobs the three passes were a third of a
        render after a poll that changed 1% of the jobs."""
        self.__dict__.update(paused_jobs=paused, text_replaced_jobs=text_replaced, overdue=overdue)


PerJob = Callable[[Store, JobView, JobRuns | None], Iterable[Sample]]
PerStore = Callable[[Store], Iterable[Sample]]

_READS: dict[PerJob, frozenset[str]] = {}


def reads(*fields: str) -> Callable[[PerJob], PerJob]:
    """Declare what a per-job sample function reads: :class:`JobView` field names, and
    ``"runs"`` for the job's run statistics. The metric store then encodes a changed job's lines
    of that family again only when one of those changed (a renamed job: its info line, not the
    rest). A function that declares nothing is assumed to read everything.
    ``tests/test_metric_store.py`` changes every other field and checks the samples stay."""

    def declare(function: PerJob) -> PerJob:
        _READS[function] = frozenset(fields)
        return function

    return declare


def fields_read(function: PerJob) -> frozenset[str] | None:
    """What ``function`` was declared to read (:func:`reads`), or None: everything."""
    return _READS.get(function)


Once = Callable[[Settings], Iterable[Sample]]


def _always(store: Store) -> bool:
    return True


def _never_before(view: JobView, settings: Settings) -> float:
    return -math.inf


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family.

    ``name`` is spelled as it is queried (counters end in ``_total``). A ``job`` family's
    ``per_job`` gives, for one job, the label values after ``jobstore`` and ``job_id``; it is
    called only for stores where ``when`` holds, and ``volatile`` says its samples depend on the
    poll time too, not only on the job's row and run history; ``due`` then says from which poll
    time on a job may have a sample (earlier polls skip the job without asking). ``doc`` is the
    meaning column of the reference in docs/metrics.md, under ``section``.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    scope: Scope
    section: str
    doc: str
    per_job: PerJob | None = None
    per_store: PerStore | None = None
    once: Once | None = None
    when: Callable[[Store], bool] = _always
    part: Part = "static"
    volatile: bool = False
    due: Callable[[JobView, Settings], float] = _never_before
    addition: bool = False

    def samples(self, stores: Iterable[Store], settings: Settings) -> Iterable[Sample]:
        """Every sample of the family, with full label values, in the order of the body."""
        if self.once is not None:
            yield from self.once(settings)
        elif self.per_store is not None:
            for store in stores:
                yield from self.per_store(store)
        elif self.per_job is not None:
            for store in stores:
                if not self.when(store):
                    continue
                runs = store.runs
                for job in store.snap.series_jobs:
                    head = (store.name, job.id)
                    for extra, value in self.per_job(store, job, runs.get(job.id)):
                        yield (*head, *extra), value


def escape(value: str) -> str:
    """Label value escaping of both exposition formats: backslash, newline, double quote (the
    static part's encoder and the per-second deltas write label values themselves)."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def flag(value: bool) -> float:
    return 1.0 if value else 0.0


def cumulative(runs: JobRuns) -> tuple[tuple[str, float], ...]:
    """Per-bucket counts to the cumulative ``le`` buckets Prometheus expects."""
    total = 0
    buckets = []
    for bound, count in zip((*BUCKETS, math.inf), runs.bucket_counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound == math.inf else repr(bound), float(total)))
    return tuple(buckets)
