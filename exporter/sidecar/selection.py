"""Which jobs get per-job series: the cardinality guard.

A store with a million jobs would otherwise put tens of millions of series into Prometheus. Jobs
are selected by include/exclude patterns (regular expressions, full match on the job id) and then
capped at ``max_jobs`` per store, keeping the jobs that fire soonest (what an operator looks at
first). Aggregates (``apscheduler_jobs``, ``apscheduler_jobs_overdue``) still count every job,
and ``jobstore_exporter_jobs_excluded`` says how many were left out and why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from exporter.sidecar.snapshot import JobView


@dataclass(frozen=True, slots=True)
class Selection:
    jobs: tuple[JobView, ...]
    excluded_by_filter: int
    excluded_by_limit: int


class JobSelector:
    def __init__(
        self, include: Sequence[str] = (), exclude: Sequence[str] = (), max_jobs: int | None = None
    ) -> None:
        self.include = [re.compile(pattern) for pattern in include]
        self.exclude = [re.compile(pattern) for pattern in exclude]
        self.max_jobs = max_jobs

    def select(self, jobs: tuple[JobView, ...]) -> Selection:
        if not self.include and not self.exclude:
            kept: tuple[JobView, ...] = jobs
        else:
            kept = tuple(job for job in jobs if self._wanted(job.id))
        filtered = len(jobs) - len(kept)
        if self.max_jobs is None or len(kept) <= self.max_jobs:
            return Selection(kept, filtered, 0)
        # `jobs` arrive sorted by id and sorts are stable: ties keep id order without a tuple key.
        soonest = sorted(kept, key=_when)[: self.max_jobs]
        soonest.sort(key=attrgetter("id"))
        return Selection(tuple(soonest), filtered, len(kept) - self.max_jobs)

    def _wanted(self, job_id: str) -> bool:
        if self.include and not any(p.fullmatch(job_id) for p in self.include):
            return False
        return not any(p.fullmatch(job_id) for p in self.exclude)


def _when(job: JobView) -> float:
    return job.next_run_time if job.next_run_time is not None else math.inf
