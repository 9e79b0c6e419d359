"""Which jobs get per-job series: the cardinality guard.

A store with a million jobs would otherwise put tens of millions of series into Prometheus. Jobs
are selected by include/exclude patterns (regular expressions, full match on the job id) and then
capped at ``max_jobs`` per store, keeping the jobs that fire soonest (what an operator looks at
first). Aggregates (``apscheduler_jobs``, ``apscheduler_jobs_overdue``) still count every job,
and ``jobstore_exporter_jobs_excluded`` says how many were left out and why.
"""

from __future__ import annotations

import itertools
import math
import operator
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
        self._last: tuple[tuple[JobView, ...] | None, Selection] = (None, Selection((), 0, 0))
        self._chosen: list[int] | None = None  # indexes into the last jobs of those chosen

    def select(self, jobs: tuple[JobView, ...]) -> Selection:
        last_jobs, last = self._last
        if jobs is last_jobs:
            return last  # a steady poll hands out the same jobs
        if last_jobs is not None and self._same_order(jobs, last_jobs):
            # Only views changed, not ids or next run times: the same jobs are chosen.
            chosen = jobs if self._chosen is None else tuple(map(jobs.__getitem__, self._chosen))
            selection = Selection(chosen, last.excluded_by_filter, last.excluded_by_limit)
        else:
            selection = self._select(jobs)
        self._last = (jobs, selection)
        return selection

    def _same_order(self, jobs: tuple[JobView, ...], last: tuple[JobView, ...]) -> bool:
        """Whether the jobs are those of the last call with the same ids and next run times in
        the same places (comparing only the views that are not the very same objects)."""
        if len(jobs) != len(last):
            return False
        changed = itertools.compress(range(len(jobs)), map(operator.is_not, jobs, last))
        return all(
            jobs[i].id == last[i].id and jobs[i].next_run_time == last[i].next_run_time
            for i in changed
        )

    def _select(self, jobs: tuple[JobView, ...]) -> Selection:
        self._chosen = None  # all of `jobs`
        if not self.include and not self.exclude:
            kept: tuple[JobView, ...] = jobs
        else:
            self._chosen = [i for i, job in enumerate(jobs) if self._wanted(job.id)]
            kept = tuple(map(jobs.__getitem__, self._chosen))
        filtered = len(jobs) - len(kept)
        if self.max_jobs is None or len(kept) <= self.max_jobs:
            return Selection(kept, filtered, 0)
        # The soonest by index: `jobs` arrive sorted by id and sorts are stable, so ties keep id
        # order, and the chosen indexes in ascending order are id order again. The sort's key is
        # a C-level lookup (no Python call per job).
        when = [math.inf if t is None else t for t in map(_NEXT_RUN, kept)]
        soonest = sorted(range(len(kept)), key=when.__getitem__)[: self.max_jobs]
        soonest.sort()
        if self._chosen is not None:
            soonest = [self._chosen[i] for i in soonest]
        self._chosen = soonest
        return Selection(tuple(map(jobs.__getitem__, soonest)), filtered, len(kept) - self.max_jobs)

    def _wanted(self, job_id: str) -> bool:
        if self.include and not any(p.fullmatch(job_id) for p in self.include):
            return False
        return not any(p.fullmatch(job_id) for p in self.exclude)


_NEXT_RUN = attrgetter("next_run_time")
