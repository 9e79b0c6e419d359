"""One job's run history, tallied: counters, the duration histogram and the ``last_*`` facts.

The history reader (``history.py``) decides which rows count and when; this is what counting a
row or noting its start and end does to one job, and the frozen :class:`JobRuns` the snapshot
carries. A tally is frozen again only after it changed, so a steady poll hands out the very
same ``JobRuns`` objects (the metric store re-encodes a job only when its object changes).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.sidecar.snapshot import JobRuns
from exporter.sidecar.sources.history_rows import FINISHED, Run

BUCKETS = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
)  # fmt: skip
"""Histogram upper bounds in seconds: 10 ms to 4 h, as the contract says."""


@dataclass(slots=True)
class JobTally:
    """Mutable accumulator for one job; frozen into a JobRuns when it changes."""

    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED, 0))
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    duration_sum: float = 0.0
    duration_count: int = 0
    last_finished: tuple[float, int] | None = None  # (finished, id) of the latest success/failure
    last_run_success: bool | None = None
    last_run_duration: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None
    failures_after_success: list[float] = field(default_factory=list)  # finish times, sorted
    last_started: tuple[float, int] | None = None
    last_run_delay: float | None = None
    published: JobRuns | None = None

    def count(self, run: Run) -> None:
        """Count a finished run: its status, and its duration for successes and failures."""
        self.runs[run.status] += 1
        if run.status in ("success", "failed") and run.duration is not None:
            self.buckets[bisect_left(BUCKETS, run.duration)] += 1
            self.duration_sum += run.duration
            self.duration_count += 1
        self.published = None

    def note_start(self, run: Run) -> None:
        """The latest start (by time, then id) sets the run delay."""
        self.published = None
        if run.started is None:
            return
        key = (run.started, run.id)
        if self.last_started is None or key > self.last_started:
            self.last_started = key
            self.last_run_delay = run.started - run.scheduled if run.scheduled is not None else None

    def note_finish(self, run: Run) -> None:
        """A success or failure: the latest one sets the ``last_*`` gauges; failures after the
        latest success make the consecutive-failure count (kept as sorted finish times, since
        runs finish out of order)."""
        self.published = None
        finished = run.finished if run.finished is not None else run.started
        if finished is None:
            return
        key = (finished, run.id)
        if self.last_finished is None or key > self.last_finished:
            self.last_finished = key
            self.last_run_success = run.status == "success"
            self.last_run_duration = run.duration
        if run.status == "success":
            self.last_success = max(self.last_success or -math.inf, finished)
            self.failures_after_success = [
                t for t in self.failures_after_success if t > self.last_success
            ]
        else:
            self.last_failure = max(self.last_failure or -math.inf, finished)
            if self.last_failure == finished:
                self.last_error = run.error
            if self.last_success is None or finished > self.last_success:
                self.failures_after_success.insert(
                    bisect_left(self.failures_after_success, finished), finished
                )

    def freeze(self, job_id: str, *, running: int, running_since: float | None) -> JobRuns:
        """The tally as the snapshot's immutable value: the same object while nothing changed."""
        published = self.published
        if (
            published is None
            or published.running != running
            or published.running_since != running_since
        ):
            published = JobRuns(
                job_id=job_id,
                runs=MappingProxyType(dict(self.runs)),
                bucket_counts=tuple(self.buckets),
                duration_sum=self.duration_sum,
                duration_count=self.duration_count,
                last_run_success=self.last_run_success,
                last_run_duration=self.last_run_duration,
                last_success=self.last_success,
                last_failure=self.last_failure,
                last_error=self.last_error,
                consecutive_failures=len(self.failures_after_success),
                last_run_delay=self.last_run_delay,
                running=running,
                running_since=running_since,
            )
            self.published = published
        return published
